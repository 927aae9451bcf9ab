"""Pure mapping between SIP/SIMPLE units and CPIM operations.

- Addresses (RFC 7247 §4-§6, digest §8.1): ``sip:user@domain`` <-> ``im:`` /
  ``pres:user@domain``; the user part is %-decoded on the way in and
  %-encoded with the SIP user character set on the way out; a ``gr`` URI
  parameter is the instance (XMPP resource) both ways.
- MESSAGE (RFC 3428, RFC 7572, digest §6.4/§8.4): a ``message/cpim`` body is
  carried byte for byte; ``text/plain``, ``text/html`` and other bodies are
  wrapped in a Message/CPIM object built with :mod:`cpimgw.cpim.message`
  (Subject -> Subject, Content-Language -> the language of the body and the
  subject, Date -> DateTime).  Towards SIP a Message/CPIM content is sent as
  ``message/cpim`` (mode ``"cpim"``) or unwrapped to its inner body (mode
  ``"native"``, for user agents that show message/cpim raw).
- Identity of a message (nothing of it is lost on the way): a SIP-born
  message's ``message_id`` is ``Call-ID;CSeq``, and a message whose id has
  that form leaves with that Call-ID and CSeq again; any other id (PRIM
  Message-ID, XMPP id) rides in the extension header ``CPIM-Message-ID``,
  and a ``conversation_id`` (PRIM Conversation-ID) in
  ``CPIM-Conversation-ID`` (RFC 3261 §8.2.2 / §20: a UA ignores a header it
  does not know).  A ``message/cpim`` body is relayed even when its
  ``Require`` names what we do not understand: Require binds the recipient,
  not a relay (RFC 3862 §3.5); only the ``native`` mode, which consumes the
  CPIM headers, honours it.
- Outcomes: 200 -> ``success``, 202 -> ``indeterminant`` (a relay accepted
  it, RFC 3428 §7), 3xx-6xx -> ``failure`` with the RFC 7247 §7 condition;
  and back: success -> 200, indeterminant -> 202, failure -> the table.
- Presence (RFC 3856, RFC 6665, RFC 3903, RFC 7248): SUBSCRIBE -> Subscribe,
  NOTIFY <-> Notify with ``Subscription-State`` (state, expires, reason),
  PUBLISH -> Publish; ``application/pidf+xml`` bodies are carried byte for
  byte.

No sockets, no reactor: every function takes what it needs.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

import attrs

from cpimgw.cpim.errors import NotUnderstoodError, ParseError, URIError
from cpimgw.cpim.signed import inner_pidf, is_signed
from cpimgw.cpim.operations import (
    MEDIA_CPIM,
    MEDIA_PIDF,
    Content,
    Message,
    Notify,
    Publish,
    Response as CPIMResponse,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
    failure,
    indeterminant,
    success,
)
from cpimgw.cpim.uri import CPIMURI, IM, PRES, parse_uri
from cpimgw.adapters.sip.errors import condition_for_status, status_for_condition
from cpimgw.adapters.sip.wire import (
    NameAddr,
    Request,
    Response,
    SipParseError,
    parse_name_addr,
    parse_params,
    parse_sip_uri,
)

#: RFC 3261 §25.1 unreserved + user-unreserved: what a SIP user part may hold unescaped.
SIP_USER_SAFE = "-_.!~*'()&=+$,;?/"
#: RFC 3261 §25.1 ``paramchar`` (but ``%``, which starts an escape): what a ``gr`` value
#: holds unescaped, e.g. a raw RFC 5627 GRUU ``urn:uuid:...``.
GR_SAFE = "-_.!~*'()[]/:&+$"
#: RFC 3428 §8: a page-mode MESSAGE outside a congestion-controlled path.
PAGE_MODE_LIMIT = 1300
MESSAGE_MODES = ("cpim", "native")
#: Extension headers carrying what a SIP MESSAGE has no header for (see the module docstring).
MESSAGE_ID_HEADER = "CPIM-Message-ID"
CONVERSATION_ID_HEADER = "CPIM-Conversation-ID"
#: ``callid = word [ "@" word ]`` (RFC 3261 §25.1; ``< > \ "`` left out), then ``;`` CSeq number.
_SIP_BORN_ID = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~():/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~():/\[\]?{}]+)?);([0-9]{1,10})\Z")
#: RFC 3261 §8.1.1.5: a CSeq number is below 2**31.
MAX_CSEQ = 2**31 - 1
DEFAULT_SUBSCRIBE_EXPIRES = 3600  # RFC 3856 §6.4
#: The namespace of SIP's own end-to-end headers in Message/CPIM (RFC 3862 §3.4 extension headers).
NS_SIP = "urn:x-cpimgw:sip"
SIP_PREFIX = "SIP"
#: End-to-end headers of a MESSAGE with no Message/CPIM core header (RFC 3261 §20.26 Priority, §20.21
#: In-Reply-To, §20.31 Reply-To, §20.25 Organization, §20.9 Call-Info): they travel as ``SIP.*``
#: extension headers and are written back as SIP headers.
END_TO_END_HEADERS = ("Priority", "In-Reply-To", "Reply-To", "Organization", "Call-Info")
_END_TO_END = {name.lower(): name for name in END_TO_END_HEADERS}


class SipMappingError(SipParseError):
    """A SIP unit that is well formed but cannot become a CPIM operation."""


# ---------------------------------------------------------------- addresses


@attrs.frozen
class Address:
    """A SIP-side address mapped to CPIM: the URI and the instance (``gr``)."""

    uri: CPIMURI
    instance: str | None = None
    secure: bool = False


def sip_to_cpim(text: str, scheme: str = IM) -> Address:
    """``sip:``/``sips:``/``im:``/``pres:`` URI text -> CPIM address (RFC 7247 §5).

    Results are cached: the same addresses recur on every message, and a
    mapped (validated) address is immutable, so it is not validated again.

    :raise SipMappingError: not a user address we can map.
    """
    return _sip_to_cpim_cached(text, scheme)


def _sip_to_cpim(text: str, scheme: str = IM) -> Address:
    lowered = text[:5].lower()
    if lowered.startswith(("im:", "pres:")):
        try:
            uri = parse_uri(text)
        except URIError as error:
            raise SipMappingError(f"bad {text.split(':', 1)[0]}: URI: {error.reason}") from None
        return Address(attrs.evolve(uri, scheme=scheme, headers=()))
    try:
        sip = parse_sip_uri(text)
    except SipParseError as error:
        raise SipMappingError(f"cannot map the address {text[:60]!r}: {error.reason}") from None
    if not sip.user:
        raise SipMappingError(f"the address {text[:60]!r} names no user")
    try:
        user = unquote_to_bytes(sip.user).decode("utf-8")
    except UnicodeDecodeError:
        raise SipMappingError("the user part is not UTF-8 after %-decoding") from None
    gr = sip.param("gr")
    instance = None
    if gr:
        instance = unquote_to_bytes(gr).decode("utf-8", "replace")
    host = sip.host
    try:
        uri = CPIMURI(scheme, user, host)
        parse_uri(str(uri))
    except URIError as error:
        raise SipMappingError(f"cannot map the address {text[:60]!r}: {error.reason}") from None
    return Address(uri, instance, sip.secure)


_sip_to_cpim_cached = functools.lru_cache(maxsize=4096)(_sip_to_cpim)
#: ``str(CPIMURI)`` (which %-encodes) for the URIs the data path writes again and again.
_uri_text = functools.lru_cache(maxsize=4096)(str)


def cpim_to_sip(uri: CPIMURI, instance: str | None = None, *, scheme: str = "sip") -> str:
    """CPIM URI (+ instance) -> ``sip:user@domain[;gr=instance]`` (RFC 7247 §6).

    Cached: the same few addresses are %-encoded again and again.
    """
    return _cpim_to_sip_cached(uri, instance, scheme)


@functools.lru_cache(maxsize=4096)
def _cpim_to_sip_cached(uri: CPIMURI, instance: str | None, scheme: str) -> str:
    text = f"{scheme}:"
    if uri.user:
        text += quote(uri.user, safe=SIP_USER_SAFE.replace(";", "").replace("?", "")) + "@"
    text += uri.domain
    if instance:
        text += ";gr=" + quote(instance, safe=GR_SAFE)
    return text


def _domain_is_literal(host: str) -> bool:
    return host.startswith("[") or host.replace(".", "").isdigit()


def destination_of(request: Request, scheme: str = IM) -> Address:
    """The CPIM destination of a request: the Request-URI, or To when the
    Request-URI names a bare IP address (a UA talking to us directly)."""
    target = sip_to_cpim(request.uri, scheme)
    if _domain_is_literal(target.uri.domain):
        to = sip_to_cpim(request.to.uri, scheme)
        if not _domain_is_literal(to.uri.domain):
            return to
    return target


# ---------------------------------------------------------------- MESSAGE


def _date_time(request: Request) -> datetime.datetime | None:
    value = request.get("date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def message_from_sip(request: Request, *, origin: str = "sip", max_size: int = 65536) -> Message:
    """A SIP MESSAGE -> CPIM ``Message`` (RFC 3428 -> RFC 3860, RFC 7572).

    :raise ParseError: a bad address or a bad message/cpim body.
    """
    from cpimgw.cpim import message as cpim

    source = sip_to_cpim(request.from_.uri)
    destination = destination_of(request)
    media = request.media_type or "text/plain"
    if media == MEDIA_CPIM:
        try:
            cpim.parse_message(request.body, max_size=max_size)  # validated, then carried byte for byte
        except NotUnderstoodError:
            pass  # well formed; Require binds the recipient, not this relay (RFC 3862 §3.5)
        content = Content(MEDIA_CPIM, request.body)
    else:
        language = request.get("content-language")
        subject = request.get("subject")
        built = cpim.build_message(
            _uri_text(source.uri),
            [_uri_text(destination.uri)],
            request.body,
            request.get("content-type") or "text/plain",
            sender_name=request.from_.display or None,
            date_time=_date_time(request),
            subjects=[(language, subject)] if subject else (),
            extensions=[(NS_SIP, SIP_PREFIX, name, value, ()) for name, value in end_to_end_headers(request)],
            content_headers=[("Content-Language", language)] if language else (),
        )
        content = Content(MEDIA_CPIM, built.to_bytes())
    max_forwards = request.max_forwards
    number, _ = request.cseq
    kwargs = {} if max_forwards is None else {"max_forwards": max_forwards}
    return Message(
        source=source.uri,
        destination=destination.uri,
        content=content,
        message_id=request.get(MESSAGE_ID_HEADER) or f"{request.call_id};{number}",
        origin=origin,
        source_instance=source.instance,
        destination_instance=destination.instance,
        conversation_id=request.get(CONVERSATION_ID_HEADER) or None,
        **kwargs,  # type: ignore[arg-type]
    )


def end_to_end_headers(request: Request) -> list[tuple[str, str]]:
    """The headers of a MESSAGE that its recipient reads and Message/CPIM has no core header for
    (:data:`END_TO_END_HEADERS`), as written."""
    found = []
    for name, value in request.headers:
        canonical = _END_TO_END.get(name.lower())
        if canonical is not None and value.strip():
            found.append((canonical, value.strip()))
    return found


def message_identity(message: Message, call_id: str) -> tuple[str, int, tuple[tuple[str, str], ...]]:
    """(Call-ID, CSeq number, extension headers) that carry ``message``'s identity to SIP.

    An id of the form ``Call-ID;CSeq`` (what :func:`message_from_sip` makes)
    is written back as that Call-ID and CSeq; any other ``message_id`` goes
    in ``CPIM-Message-ID`` (with ``call_id``, a fresh one, as Call-ID), and a
    ``conversation_id`` in ``CPIM-Conversation-ID``.
    """
    headers: list[tuple[str, str]] = []
    number = 1
    if message.message_id:
        match = _SIP_BORN_ID.match(message.message_id)
        if match is not None and 0 < int(match.group(2)) <= MAX_CSEQ:
            call_id, number = match.group(1), int(match.group(2))
        elif message.message_id != _carried_content_id(message.content):
            headers.append((MESSAGE_ID_HEADER, _header_safe(message.message_id)))
        # else: the id is the Content-ID of the carried Message/CPIM object (an XMPP id, RFC 3922
        # §4): it travels inside the object, nothing to add.
    if message.conversation_id:
        headers.append((CONVERSATION_ID_HEADER, _header_safe(message.conversation_id)))
    return call_id, number, tuple(headers)


def _carried_content_id(content: Content) -> str | None:
    """The ``Content-ID`` (without ``<>``) of the entity a Message/CPIM content encapsulates, if any.

    A scan of the encapsulated MIME header block only (RFC 3862 §2: CPIM
    headers, blank line, MIME headers); no full parse on the data path.
    """
    if content.media_type != MEDIA_CPIM:
        return None
    body = content.body
    start = body.find(b"\r\n\r\n")
    if start == -1:
        return None
    end = body.find(b"\r\n\r\n", start + 4)
    block = body[start + 4: end if end != -1 else len(body)]
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-id":
            return value.strip().strip(b"<>").decode("utf-8", "replace")
    return None


def message_to_sip(
    message: Message,
    *,
    call_id: str,
    from_tag: str,
    mode: str = "cpim",
    max_forwards: int = 70,
) -> Request:
    """A CPIM ``Message`` -> SIP MESSAGE (no Via: the stack adds it).

    :param mode: ``"cpim"`` carries message/cpim octets as they are;
        ``"native"`` unwraps a Message/CPIM content to its inner body.
    """
    from cpimgw.cpim import message as cpim

    request_uri = cpim_to_sip(message.destination, message.destination_instance)
    source = cpim_to_sip(message.source, message.source_instance)
    call_id, number, identity = message_identity(message, call_id)
    headers: list[tuple[str, str]] = [
        ("From", f"<{source}>;tag={from_tag}"),
        ("To", f"<{cpim_to_sip(message.destination)}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{number} MESSAGE"),
        ("Max-Forwards", str(min(max_forwards, message.max_forwards))),
        *identity,
    ]
    media = message.content.media_type.lower()
    body = message.content.body
    content_type = media
    if media == MEDIA_CPIM and mode == "native":
        parsed = cpim.parse_message(body)
        body = parsed.body
        content_type = parsed.content_type
        subjects = parsed.subjects
        if subjects:
            headers.append(("Subject", _header_safe(subjects[0][1])))
        language = parsed.content_header("content-language") or (subjects[0][0] if subjects else None)
        if language:
            headers.append(("Content-Language", _header_safe(language)))
        if parsed.date_time is not None:
            headers.append(("Date", format_datetime(parsed.date_time.value.astimezone(datetime.timezone.utc), usegmt=True)))
        headers.extend(_own_headers(parsed))
    elif media == MEDIA_CPIM:
        # SIP's own headers first (RFC 3261 §20): what a SIP user agent shows without reading the
        # message/cpim body; the body stays the whole object, octet for octet.
        try:
            parsed = cpim.parse_message(body)
        except NotUnderstoodError as error:
            parsed = cpim.parse_message(body, understood=frozenset(error.names))
        except ParseError:
            parsed = None
        if parsed is not None:
            subjects = parsed.subjects
            if subjects:
                headers.append(("Subject", _header_safe(subjects[0][1])))
            if parsed.date_time is not None:
                headers.append(("Date", format_datetime(parsed.date_time.value.astimezone(datetime.timezone.utc),
                                                        usegmt=True)))
            headers.extend(_own_headers(parsed))
            display = parsed.sender.display_name
            if display and parsed.sender.cpim_uri is not None and parsed.sender.cpim_uri.same_principal(
                    message.source):
                headers[0] = ("From", f"{_quoted(display)} <{source}>;tag={from_tag}")  # RFC 3261 §20.20
    elif message.content.parameters:
        content_type = media + "".join(f";{k}={v}" for k, v in message.content.parameters)
    headers.append(("Content-Type", _header_safe(content_type)))
    return Request("MESSAGE", request_uri, tuple(headers), body)


def _quoted(display: str) -> str:
    """A display name as an RFC 3261 §25.1 ``quoted-string``."""
    return '"' + _header_safe(display).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _own_headers(parsed: object) -> list[tuple[str, str]]:
    """The SIP headers a Message/CPIM object's ``SIP.*`` extension headers stand for (:func:`end_to_end_headers`)."""
    found = []
    for namespace, name, value, _ in parsed.extension_headers:  # type: ignore[attr-defined]
        if namespace == NS_SIP and name.lower() in _END_TO_END:
            found.append((_END_TO_END[name.lower()], _header_safe(value)))
    return found


def _header_safe(text: str) -> str:
    """No CR/LF may reach a SIP header (header injection, perf-reliability B1)."""
    return "".join(" " if c in "\r\n\x00" else c for c in text).strip()


def response_from_sip(operation: Message | Subscribe | Notify | Publish, response: Response) -> CPIMResponse:
    """The far side's SIP final response -> CPIM response (RFC 3428 §7: 202 is no guarantee)."""
    code = response.status
    if code == 202:
        return indeterminant(operation, response.reason or "Accepted", native_code=code)
    if 200 <= code < 300:
        expires = response.expires if isinstance(operation, Subscribe) else None
        return success(operation, response.reason or "OK", duration=expires, native_code=code)
    return failure(operation, condition_for_status(code), response.reason or str(code), native_code=code)


def accepted_media(response: Response) -> tuple[str, ...]:
    """The media ranges a 415's ``Accept`` names (RFC 3261 §21.4.16, §20.1), lower case, without parameters.

    Unparseable entries are skipped (the far side's header is input, not a
    contract); an absent or empty Accept gives ``()``.
    """
    ranges: list[str] = []
    for value in response.get_all("Accept"):
        media = value.split(";", 1)[0].strip().lower()
        kind, slash, subtype = media.partition("/")
        if slash and kind and subtype and media not in ranges:
            ranges.append(media)
    return tuple(ranges)


def media_accepted(media_type: str, ranges: tuple[str, ...]) -> bool:
    """Whether ``media_type`` is within one of the Accept ``ranges`` (``*/*``, ``type/*``, ``type/subtype``)."""
    media = media_type.split(";", 1)[0].strip().lower()
    kind = media.partition("/")[0]
    return any(r == media or r == "*/*" or r == f"{kind}/*" for r in ranges)


def native_acceptable(media_type: str, ranges: tuple[str, ...]) -> bool:
    """Whether the native form (media ``media_type``) of a Message/CPIM may be retried after a 415.

    Never a signed body (``multipart/signed``: its signature covers the
    Message/CPIM object, which the native form drops, RFC 3862 §5.2).  With
    no usable Accept (against RFC 3261 §21.4.16) only ``text/plain``, the type
    RFC 3428 has every MESSAGE UA support.
    """
    if is_signed(media_type.split(";", 1)[0]):
        return False
    if not ranges:
        return media_type.split(";", 1)[0].strip().lower() == "text/plain"
    return media_accepted(media_type, ranges)


def unsupported_media_reason(response: Response, ranges: tuple[str, ...], detail: str = "") -> str:
    """The failure reason for a final 415: the phrase, the types the recipient accepts and why no retry."""
    accepts = ", ".join(ranges) if ranges else "no type it named"
    reason = f"{response.reason or 'Unsupported Media Type'}: the recipient accepts {accepts}"
    return f"{reason}; {detail}" if detail else reason


def status_for_response(response: CPIMResponse) -> tuple[int, str]:
    """The SIP status and reason phrase for the bus's answer to a SIP request."""
    if response.status is Status.SUCCESS:
        return (200, "OK")
    if response.status is Status.INDETERMINANT:
        return (202, "Accepted")
    code, phrase = status_for_condition(response.condition)
    if response.reason:
        phrase = f"{phrase} ({_header_safe(response.reason)[:120]})"
    return (code, phrase)


# ---------------------------------------------------------------- presence


def format_subscription_state(state: SubscriptionState, *, expires: int | None = None,
                              reason: TerminationReason | None = None) -> str:
    """``Subscription-State`` value (RFC 6665 §8.2.3)."""
    text = state.value
    if state is SubscriptionState.TERMINATED:
        if reason is not None:
            text += f";reason={reason.value}"
    elif expires is not None:
        text += f";expires={max(0, int(expires))}"
    return text


@attrs.frozen
class SubscriptionStateValue:
    state: SubscriptionState
    expires: int | None = None
    reason: TerminationReason | None = None
    retry_after: int | None = None


def parse_subscription_state(value: str) -> SubscriptionStateValue:
    """Parse ``Subscription-State`` (unknown substates are treated as pending, RFC 6665 §4.1.3)."""
    head, _, params_text = value.partition(";")
    params = dict((k.lower(), v) for k, v in parse_params(params_text)) if params_text.strip() else {}
    try:
        state = SubscriptionState(head.strip().lower())
    except ValueError:
        state = SubscriptionState.PENDING
    reason = None
    if params.get("reason"):
        try:
            reason = TerminationReason(params["reason"].lower())
        except ValueError:
            reason = None
    def number(name: str) -> int | None:
        text = params.get(name)
        return int(text) if text and text.isdigit() and len(text) <= 10 else None
    return SubscriptionStateValue(state, number("expires"), reason, number("retry-after"))


def subscript_id_for(call_id: str, tag: str | None) -> str:
    """A stable SubscriptID for a SIP dialog (Call-ID + the remote tag)."""
    return "sip-" + hashlib.sha256(f"{call_id}\x00{tag or ''}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


def subscribe_from_sip(request: Request, *, subscript_id: str, default_expires: int = DEFAULT_SUBSCRIBE_EXPIRES,
                       origin: str = "sip") -> Subscribe:
    """SIP SUBSCRIBE (Event: presence) -> CPIM ``Subscribe`` (RFC 7248 §4)."""
    watcher = sip_to_cpim(request.from_.uri, PRES)
    target = destination_of(request, PRES)
    expires = request.expires
    duration = default_expires if expires is None else min(expires, 2**31 - 1)
    max_forwards = request.max_forwards
    kwargs = {} if max_forwards is None else {"max_forwards": max_forwards}
    return Subscribe(watcher.uri, target.uri, duration, subscript_id=subscript_id, origin=origin,
                     watcher_instance=watcher.instance, **kwargs)  # type: ignore[arg-type]


def presence_content(request: Request) -> Content | None:
    """The presence document of a NOTIFY/PUBLISH body, octets unchanged (``None`` if empty)."""
    if not request.body:
        return None
    ctype = request.content_type
    media = ctype.media_type if ctype is not None else MEDIA_PIDF
    params = tuple((k, v if v is not None else "") for k, v in (ctype.params if ctype else ()))
    return Content(media, request.body, params)


def notify_from_sip(request: Request, *, watcher: CPIMURI, target: CPIMURI, subscript_id: str,
                    origin: str = "sip") -> Notify:
    """SIP NOTIFY (for a subscription we made) -> CPIM ``Notify``."""
    state = parse_subscription_state(request.get("subscription-state") or "active")
    return Notify(
        watcher=watcher,
        target=target,
        presence=presence_content(request),
        subscript_id=subscript_id,
        state=state.state,
        expires=state.expires,
        reason=state.reason,
        origin=origin,
    )


def notify_body(notify: Notify, *, signed: bool = True) -> tuple[bytes, str | None]:
    """The NOTIFY body and Content-Type for a CPIM ``Notify`` (PIDF octets unchanged).

    A signed document (``multipart/signed``, RFC 3863 §4) goes as it is to a
    watcher that takes it (``signed``: its Accept lists ``multipart/signed``);
    any other watcher gets the PIDF the signature covers, octet for octet,
    as ``application/pidf+xml`` (RFC 3856 §6.7: no Accept means PIDF only;
    RFC 3261 §8.2.3: never a body the subscriber did not accept).
    """
    if notify.presence is None:
        return b"", None
    content = notify.presence
    if is_signed(content.media_type) and not signed:
        try:
            return inner_pidf(content.body, content.parameters), MEDIA_PIDF
        except ParseError:
            return b"", None  # not a signed PIDF after all: nothing this watcher can read
    ctype = content.media_type + "".join(f";{k}={v}" for k, v in content.parameters)
    return content.body, ctype


def entity_tag_for(instance: str) -> str:
    """An instance as an RFC 3903 ``entity-tag`` (a ``token``): token characters as they are, others (``%`` too:
    reversible with ``unquote``) %-escaped."""
    return quote(instance, safe="-.!*_+`'~")


def publish_from_sip(request: Request, *, instance: str, expires: int | None, presence: Content,
                     origin: str = "sip") -> Publish:
    """SIP PUBLISH (Event: presence) -> CPIM ``Publish`` for the presentity of the Request-URI."""
    presentity = destination_of(request, PRES)
    return Publish(presentity.uri, presence, origin=origin, instance=instance, expires=expires)


def with_tag(value: NameAddr | str, tag: str) -> str:
    addr = parse_name_addr(value) if isinstance(value, str) else value
    return str(addr.with_tag(tag))

