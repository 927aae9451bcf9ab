"""SIP presence state: notifier and subscriber dialogs (RFC 6665, RFC 3856) and PUBLISH state (RFC 3903).

- :class:`Dialog` — the RFC 3261 §12 dialog state a subscription needs
  (Call-ID, tags, remote target, route set, CSeq counters).
- :class:`WatcherSubscription` — a SIP watcher subscribed to a user behind
  another adapter (we are the notifier): its dialog, SubscriptID, expiry.
- :class:`OutgoingSubscription` — the gateway subscribed to a SIP user on
  behalf of a watcher behind another adapter (we are the subscriber).
- :class:`PublicationStore` — the ESC side of RFC 3903: entity tags, lineage
  (the first etag of a lineage is the instance on the bus), expiry, the §6
  processing order (:meth:`PublicationStore.check`).

Pure state with the reactor clock passed in; the adapter does the I/O.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

import attrs

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.operations import Content
from cpimgw.cpim.signed import MEDIA_SIGNED, is_signed, signed_pidf
from cpimgw.cpim.uri import CPIMURI
from cpimgw.adapters.sip.wire import Request, parse_name_addr, random_hex


def new_tag() -> str:
    """A From/To tag: 48 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return random_hex(6)


@attrs.define
class Dialog:
    """RFC 3261 §12 dialog state (mutable: CSeq numbers and the remote target move)."""

    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    remote_tag: str | None = None
    remote_target: str | None = None
    route_set: tuple[str, ...] = ()
    local_cseq: int = 0
    remote_cseq: int | None = None

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def request(self, method: str, headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> Request:
        """An in-dialog request (RFC 3261 §12.2.1.1), Via left to the stack."""
        remote = f"<{self.remote_uri}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        base: tuple[tuple[str, str], ...] = (
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.next_cseq()} {method}"),
        ) + tuple(("Route", route) for route in self.route_set)
        return Request(method, self.remote_target or self.remote_uri, base + headers, body)

    def accept_remote_cseq(self, number: int) -> bool:
        """RFC 3261 §12.2.2: a lower CSeq than the last one is out of order."""
        if self.remote_cseq is not None and number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True


def dialog_as_uas(request: Request, local_tag: str) -> Dialog:
    """The dialog a SUBSCRIBE creates at its notifier (RFC 3261 §12.1.1)."""
    contacts = request.get_all("contact")
    target = parse_name_addr(contacts[0]).uri if contacts else request.from_.uri
    routes = request.get_all("record-route")
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        local_uri=request.to.uri,
        remote_uri=request.from_.uri,
        remote_tag=request.from_.tag,
        remote_target=target,
        route_set=tuple(routes),
        local_cseq=0,
        remote_cseq=request.cseq[0],
    )


@attrs.define
class WatcherSubscription:
    """A SIP watcher's subscription (we notify)."""

    dialog: Dialog
    subscript_id: str
    watcher: CPIMURI
    target: CPIMURI
    expires_at: float
    source: Any = None  # the Source the SUBSCRIBE came from (fallback route for NOTIFY)
    terminated: bool = False
    #: RFC 3856 §6.12 rate limit: when the last NOTIFY left (reactor clock),
    #: the Notify waiting for its turn (the latest wins), and its timer.
    last_notify: float | None = None
    pending: Any = None
    pending_call: Any = None
    #: The next NOTIFY answers a SUBSCRIBE (RFC 6665 §4.2.2: sent at once).
    immediate: bool = True
    #: The media ranges of the SUBSCRIBE's Accept, lower case, without parameters (RFC 3261 §20.1).
    accept: tuple[str, ...] = ()


@attrs.define
class OutgoingSubscription:
    """A subscription the gateway holds towards a SIP presentity (we are notified)."""

    dialog: Dialog
    subscript_id: str
    watcher: CPIMURI
    target: CPIMURI
    duration: int
    expires_at: float = 0.0
    refresh: Any = None  # IDelayedCall
    established: bool = False
    fetch: bool = False


@attrs.define
class Publication:
    etag: str
    lineage: str
    presentity: str
    content: Content
    expires_at: float
    timer: Any = None


#: What a PUBLISH body may be (RFC 3856 §6: PIDF; RFC 3863 §4: a signed PIDF).
PUBLISH_TYPES = ("application/pidf+xml", MEDIA_SIGNED)


def _phrase(text: str) -> str:
    """Text safe in a reason phrase: one line, bounded."""
    return " ".join(text.split())[:120]


def accepts_signed(accept: tuple[str, ...]) -> bool:
    """Whether a SUBSCRIBE's Accept media ranges take ``multipart/signed`` (RFC 3261 §20.1).

    No Accept means PIDF only (RFC 3856 §6.7), so it does not.
    """
    return any(a in (MEDIA_SIGNED, "multipart/*", "*/*") for a in accept)


class PublishRejected(Exception):
    """An RFC 3903 §6 rejection: the status, reason phrase and extra headers."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers


class PublicationStore:
    """RFC 3903 ESC state: entity tags per presentity, lineage, expiry."""

    def __init__(self, clock: Callable[[], float], *, min_expires: int = 60, max_expires: int = 3600,
                 default_expires: int = 3600, max_publications: int = 100000) -> None:
        self.clock = clock
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_publications = max_publications
        self.by_etag: dict[str, Publication] = {}

    def check(self, request: Request, presentity: CPIMURI | None = None) -> tuple[Publication | None, int, Content | None]:
        """Apply RFC 3903 §6 steps 2-6 (the caller did step 1, the Request-URI).

        A body is ``application/pidf+xml``, or a signed PIDF document
        (``multipart/signed`` whose first part is a PIDF of ``presentity``,
        RFC 3863 §4, checked by :func:`cpimgw.cpim.signed.signed_pidf`; 400
        when it is not), relayed octet for octet.

        :return: (the publication an If-Match names or ``None``, the granted
            expiry, the new content or ``None`` for a refresh/remove).
        :raise PublishRejected: 489, 400, 412, 423, 415.
        """
        event = (request.get("event") or "").split(";")[0].strip().lower()
        if event != "presence":
            raise PublishRejected(489, "Bad Event", (("Allow-Events", "presence"),))
        matches = request.get_all("sip-if-match")
        if len(matches) > 1 or (matches and "," in matches[0]):
            raise PublishRejected(400, "Bad Request (more than one SIP-If-Match)")
        existing = None
        if matches:
            existing = self.by_etag.get(matches[0].strip())
            if existing is None:
                raise PublishRejected(412, "Conditional Request Failed")
        requested = request.expires
        expires = self.default_expires if requested is None else requested
        if 0 < expires < self.min_expires:
            raise PublishRejected(423, "Interval Too Brief", (("Min-Expires", str(self.min_expires)),))
        expires = min(expires, self.max_expires)
        content = None
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.media_type not in PUBLISH_TYPES:
                raise PublishRejected(415, "Unsupported Media Type", (("Accept", ", ".join(PUBLISH_TYPES)),))
            params = tuple((k, v if v is not None else "") for k, v in ctype.params)
            if is_signed(ctype.media_type):
                try:
                    signed_pidf(request.body, params, presentity)
                except ParseError as error:
                    raise PublishRejected(400, f"Bad Request ({_phrase(error.reason)})") from None
            content = Content(ctype.media_type, request.body, params)
        elif existing is None:
            raise PublishRejected(400, "Bad Request (an initial PUBLISH needs a body)")
        elif expires > 0 and existing is not None:
            content = None  # refresh
        if existing is None and expires == 0:
            raise PublishRejected(400, "Bad Request (Expires: 0 without SIP-If-Match)")
        if existing is None and len(self.by_etag) >= self.max_publications:
            raise PublishRejected(503, "Service Unavailable (too many publications)")
        return existing, expires, content

    def commit(self, presentity: str, existing: Publication | None, expires: int, content: Content | None) -> Publication:
        """Record the outcome: a new etag for the lineage (the old one is retired)."""
        now = self.clock()
        if existing is not None:
            self.by_etag.pop(existing.etag, None)
        etag = secrets.token_hex(8)
        publication = Publication(
            etag=etag,
            lineage=existing.lineage if existing is not None else etag,
            presentity=presentity,
            content=content if content is not None else existing.content,  # type: ignore[union-attr]
            expires_at=now + expires,
        )
        if existing is not None and existing.timer is not None and existing.timer.active():
            existing.timer.cancel()
        if expires > 0:
            self.by_etag[etag] = publication
        return publication

    def remove(self, etag: str) -> Publication | None:
        publication = self.by_etag.pop(etag, None)
        if publication is not None and publication.timer is not None and publication.timer.active():
            publication.timer.cancel()
        return publication
