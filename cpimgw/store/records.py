"""The record types every ``IStore`` keeps (RFC 3859 §4.4 "persistent storage").

RFC 3859 §4.4.3 asks a presence service to keep "presence data and running
subscriptions" in persistent storage; RFC 3860 §4 and the duplicate guard of
the bus add one more kind of fact that has to survive a restart: the keys of
the messages already handed on.  These are the immutable values the stores
(:mod:`cpimgw.store.memory`, :mod:`cpimgw.store.sqlite`) put and give back.

URIs are kept as text in the canonical *principal* form produced by
:func:`principal_key` (``pres:user@domain`` with the domain in lower case and
without a trailing dot), so that ``im:alice@Example.COM`` and
``pres:alice@example.com`` are one watcher, in memory and in SQL alike.
"""

from __future__ import annotations

import hashlib

import attrs

from cpimgw.cpim.operations import Content
from cpimgw.cpim.uri import CPIMURI, PRES, parse_uri

#: The values of :attr:`SubscriptionRecord.state`.
ACTIVE = "active"
PENDING = "pending"
TERMINATED = "terminated"
STATES = (ACTIVE, PENDING, TERMINATED)


def principal_key(uri: CPIMURI | str) -> str:
    """The canonical text of the principal a URI names: ``pres:user@domain``.

    :param uri: a :class:`CPIMURI` or the text of an ``im:``/``pres:`` URI.
    :raise cpimgw.cpim.errors.URIError: if the text is not such a URI.
    """
    if isinstance(uri, str):
        uri = parse_uri(uri)
    return str(CPIMURI(PRES, uri.user, uri.domain_key))


def document_digest(document: Content | None) -> str:
    """A short stable digest of a presence document (media type and octets).

    Used to tell whether a watcher has already been sent this exact state
    (lessons.md #10: unchanged presence is not re-sent).  ``None`` (no
    document) has the digest ``""``.
    """
    if document is None:
        return ""
    digest = hashlib.sha256()
    digest.update(document.media_type.encode("utf-8"))
    digest.update(b"\x00")
    for name, value in document.parameters:
        digest.update(f";{name}={value}".encode("utf-8"))
    digest.update(b"\x00")
    digest.update(document.body)
    return digest.hexdigest()


def _check_state(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if value not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {value!r}")


@attrs.frozen
class SubscriptionRecord:
    """One RFC 3859 subscription as the presence service keeps it.

    :ivar subscript_id: the SubscriptID (key of the record).
    :ivar watcher: the watcher, as :func:`principal_key` text.
    :ivar target: the presentity, as :func:`principal_key` text.
    :ivar watcher_origin: name of the adapter the subscribe came from; the
        notifications go back there while it is registered.
    :ivar watcher_instance: the watcher's instance (XMPP resource, SIP
        contact...) when the source named one.
    :ivar expires_at: when the subscription ends, in reactor seconds since
        the epoch (``reactor.seconds()``).
    :ivar state: ``'active'``, ``'pending'`` (the target's network has not
        authorised it yet) or ``'terminated'``.
    :ivar created_at: when it was first granted (reactor seconds).
    :ivar last_document_digest: :func:`document_digest` of the last document
        notified to the watcher, ``None`` before the first notify.
    :ivar target_origin: name of the adapter the subscribe was forwarded
        to (``""`` when it was served from published state only).
    """

    subscript_id: str
    watcher: str
    target: str
    watcher_origin: str
    watcher_instance: str | None
    expires_at: float
    state: str = attrs.field(default=PENDING, validator=_check_state)
    created_at: float = 0.0
    last_document_digest: str | None = None
    target_origin: str = ""

    def live(self, now: float) -> bool:
        """Whether the subscription still runs at ``now``."""
        return self.state != TERMINATED and self.expires_at > now


@attrs.frozen
class PresenceRecord:
    """The last presence document of one instance of a presentity.

    :ivar presentity: :func:`principal_key` text.
    :ivar instance: the publishing instance (``""`` when none was named).
    :ivar media_type: the document's media type.
    :ivar body: the document's octets, never re-serialised.
    :ivar updated_at: reactor seconds of the last change.
    :ivar parameters: the Content-Type parameters of the document.
    :ivar expires_at: when a publish with ``expires`` runs out (reactor
        seconds), ``None`` for never.
    """

    presentity: str
    instance: str
    media_type: str
    body: bytes
    updated_at: float
    parameters: tuple[tuple[str, str], ...] = ()
    expires_at: float | None = None

    @property
    def document(self) -> Content:
        return Content(self.media_type, self.body, self.parameters)


@attrs.frozen
class DuplicateKey:
    """A duplicate-suppression key and the time it may be forgotten."""

    key: str
    expires_at: float


def check_value_arguments(
    scope: object, key: object = "", value: object = b"", expires_at: object = None
) -> None:
    """Check the arguments of the ``IStore`` adapter-state methods (``put_value`` and friends).

    :raise TypeError: ``scope``/``key`` not ``str``, ``value`` not ``bytes``,
        ``expires_at`` neither ``None`` nor a number.
    """
    if not isinstance(scope, str):
        raise TypeError(f"scope must be str, not {type(scope).__name__}")
    if not isinstance(key, str):
        raise TypeError(f"key must be str, not {type(key).__name__}")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, (int, float))):
        raise TypeError(f"expires_at must be a number or None, not {type(expires_at).__name__}")


def store_seconds(clock: object) -> float:
    """``clock.seconds()``, or the global reactor's when ``clock`` is ``None``."""
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    return float(clock.seconds())  # type: ignore[attr-defined]
