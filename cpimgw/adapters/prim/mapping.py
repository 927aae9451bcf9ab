"""Pure PRIM <-> CPIM mapping (digest §2.11, §2.12; RFC 3859, RFC 3860, RFC 3862).

No sockets, no reactor: every function takes the values it needs (the clock
as a number) and returns values.

=====================================  ===========================================
CPIM (hub)                             PRIM (draft-ietf-prim-server-00)
=====================================  ===========================================
message(source, destination, ...)      SEND From To Message-ID Conversation-ID Date
subscribe(duration > 0)                SUBSCRIBE From To Duration Subscription-ID
subscribe(duration 0, same id)         UNSUBSCRIBE (or SUBSCRIBE Duration: 0, same id)
subscribe(duration 0, new id)          SUBSCRIBE Duration: 0 + fresh id (fetch)
notify(watcher, target, presence)      NOTIFY From=target To=watcher Subscription-ID
presentity-side termination            NOTIFY Duration: 0
response success/failure/indeterm.     200 (201) / 4xx 5xx / 101
=====================================  ===========================================

SEND bodies of type ``message/cpim`` travel byte for byte both ways.  Any
other SEND body is wrapped in Message/CPIM for the hub as -01 §17.2 says
(PRIM ``From``/``To``/``Date`` -> CPIM ``From``/``To``/``DateTime``;
``Message-ID`` and ``Conversation-ID`` -> ``PRIM.`` headers in the
``http://www.fujitsulabs.com/prim/`` namespace; the PRIM Content-Type becomes
the content's), the original body octets unchanged inside.

MaxForwards has no PRIM field: between gateways it rides in the extension
header ``X-Max-Forwards`` (digest §2.12), decremented by the bus.  Likewise
what the hub operations carry and PRIM has no header for rides in extension
headers (unknown headers are ignored by other PRIM servers):

- ``X-From-Instance`` / ``X-To-Instance`` on SEND: the sending and receiving
  instance (SIP GRUU, XMPP resource; PRIM itself names none on SEND);
- ``X-Subscription-State`` on NOTIFY when ``Duration`` alone cannot say it
  (RFC 6665 §4.1.3 syntax): ``pending``, or ``terminated`` with a reason other
  than ``deactivated`` (what ``Duration: 0`` means), e.g.
  ``terminated;reason=timeout``.

A SEND names its conversation (Conversation-ID, which replies reuse): the
hub's ``Message.conversation_id``.  A message that had none is sent with its
Message-ID as Conversation-ID (a conversation of one message), and a SEND
whose Conversation-ID equals its Message-ID maps back to none.  Message-ID,
Conversation-ID and the instances are ``1*(unreserved / escaped)`` on the
wire: values are %-escaped on the way out and unescaped on the way in when
the wire form is the canonical escape of the value (else kept as written).

The status tables (PRIM code <-> CPIM condition, and the §2.12 columns towards
SIP and XMPP) are plain dictionaries, tested as tables.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import Optional
from urllib.parse import unquote_to_bytes

from cpimgw.adapters.prim.wire import PrimError, Request, Response
from cpimgw.cpim import interworking
from cpimgw.cpim.errors import ParseError, URIError
from cpimgw.cpim.operations import (
    DEFAULT_MAX_FORWARDS,
    MEDIA_CPIM,
    MEDIA_PIDF,
    Condition,
    Content,
    Message,
    Notify,
    Publish,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
    is_fetch_id,
    new_fetch_id,
    new_id,
)
from cpimgw.cpim.operations import Response as CPIMResponse
from cpimgw.cpim.signed import MEDIA_SIGNED, signed_pidf
from cpimgw.cpim.uri import IM, PRES, CPIMURI, parse_uri

PRIM_NS = "http://www.fujitsulabs.com/prim/"
MAX_FORWARDS_HEADER = "X-Max-Forwards"
FROM_INSTANCE_HEADER = "X-From-Instance"
TO_INSTANCE_HEADER = "X-To-Instance"
SUBSCRIPTION_STATE_HEADER = "X-Subscription-State"
LEGACY_PRESENCE = "application/presence"
OLD_PIDF = "application/cpim-pidf+xml"

# --------------------------------------------------------------- status tables

# The tables are the shared ones of cpimgw.cpim.interworking (digest §2.7/§2.12, with the
# RFC 7247 §7 tables they sit beside); the names here are the PRIM adapter's.
PRIM_TO_CPIM = interworking.PRIM_TO_CPIM
CONDITION_TO_PRIM = interworking.CONDITION_TO_PRIM
PRIM_TO_SIP = interworking.PRIM_TO_SIP
PRIM_TO_XMPP = interworking.PRIM_TO_XMPP
cpim_status = interworking.cpim_status_for_prim


def prim_code(response: CPIMResponse, method: str = "SEND") -> int:
    """The PRIM status that answers a PRIM ``method`` whose hub outcome is ``response``."""
    if response.status is Status.SUCCESS:
        if method == "SUBSCRIBE" and response.native_code == 201:
            return 201
        return 200
    if response.status is Status.INDETERMINANT:
        return 101 if method == "SEND" else 200
    condition = response.condition or Condition.INTERNAL
    code = CONDITION_TO_PRIM.get(condition, 500)
    if code == 505 and method != "SUBSCRIBE":
        code = 500
    return code


def cpim_response(trans_id: str, response: Response) -> CPIMResponse:
    """The hub ``response`` for a PRIM response to one of our requests."""
    status, condition = cpim_status(response.code)
    duration = response.header("Duration")
    return CPIMResponse(
        trans_id,
        status,
        interworking.tag_reason("PRIM", response.code, response.reason),
        condition,
        int(duration) if duration and duration.isdigit() else None,
        response.code,
    )


# --------------------------------------------------------------- addresses and dates


def prim_address(value: Optional[str], scheme: str, header: str) -> CPIMURI:
    """Parse a ``From``/``To`` value into a CPIM URI of ``scheme`` (im: and pres: name one principal)."""
    if not value:
        raise PrimError(f"the {header} header is missing")
    text = value.strip()
    if ":" not in text.split("@", 1)[0]:
        text = f"{scheme}:{text}"  # -02: ids without the scheme in context
    try:
        uri = parse_uri(text)
    except URIError as error:
        raise PrimError(f"{header}: {error.reason}") from None
    if not uri.user:
        raise PrimError(f"{header}: {value!r} names no user")
    return uri.as_im() if scheme == IM else uri.as_pres()


def format_date(when: datetime.datetime) -> str:
    """RFC 1123 date with a numeric zone (-01 §15.5), e.g. ``Thu, 30 Mar 2000 09:59:34 -0500``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return email.utils.format_datetime(when).replace("GMT", "+0000")


def parse_date(value: str) -> datetime.datetime:
    """Parse a PRIM ``Date`` (day and month names case-insensitive)."""
    text = re.sub(r"[A-Za-z]+", lambda m: m.group(0).capitalize(), value.strip())
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise PrimError(f"Date {value[:40]!r} is not an RFC 1123 date") from None
    if when.tzinfo is None:
        raise PrimError(f"Date {value[:40]!r} has no numeric zone")
    return when


def rfc3339(when: datetime.datetime) -> str:
    return when.isoformat()


def date_from_rfc3339(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def now_utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(microsecond=0)


# --------------------------------------------------------------- Message/CPIM helpers


def message_id_of(request: Request) -> Optional[str]:
    """The SEND ``Message-ID`` (also the garbled ABNF form ``Message-ID<token>: ...``)."""
    value = request.header("Message-ID")
    if value is not None:
        return value.strip() or None
    for name, value in request.headers:
        if name.startswith("Message-ID") and len(name) > 10 and name[10:].isalnum():
            return name[10:]
    return None


def _split_content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    media, *params = [part.strip() for part in value.split(";")]
    pairs = []
    for param in params:
        if "=" in param:
            key, _, val = param.partition("=")
            pairs.append((key.strip(), val.strip()))
    return media.lower(), tuple(pairs)




def wrap_cpim(
    source: CPIMURI,
    destination: CPIMURI,
    content_type: str,
    body: bytes,
    *,
    date_time: Optional[datetime.datetime],
    message_id: Optional[str],
    conversation_id: Optional[str],
    reply_to: Optional[str] = None,
) -> bytes:
    """-01 §17.2: a non-CPIM SEND body inside Message/CPIM (RFC 3862 §3), body octets unchanged."""
    pairs = [(name, value) for name, value in (("Message-ID", message_id), ("Conversation-ID", conversation_id),
                                                 ("Reply-To", reply_to)) if value]
    if all(_SAFE_VALUE.match(value) for _, value in pairs) and _SAFE_VALUE.match(content_type.replace(" ", "")):
        # The fast path writes exactly what build_message writes for these plain values
        # (tested against it); anything that might need RFC 3862 escapes takes the full builder.
        lines = [f"From: <{source}>", f"To: <{destination}>"]
        if date_time is not None:
            lines.append(f"DateTime: {rfc3339(date_time)}")
        if pairs:
            lines.append(f"NS: PRIM <{PRIM_NS}>")
            lines.extend(f"PRIM.{name}: {value}" for name, value in pairs)
        head = "\r\n".join(lines).encode("utf-8")
        return head + b"\r\n\r\nContent-Type: " + content_type.encode("utf-8") + b"\r\n\r\n" + body
    from cpimgw.cpim.message import build_message

    extensions = [(PRIM_NS, "PRIM", name, value, ()) for name, value in pairs]
    built = build_message(source, [destination], body, content_type, date_time=date_time, extensions=extensions)
    return built.to_bytes()


def cpim_headers(data: bytes) -> dict[str, str]:
    """The message headers of Message/CPIM octets, with ``PRIM.`` names resolved through ``NS``.

    Only what the PRIM mapping needs: ``From``, ``To``, ``DateTime`` and the PRIM
    namespace headers (keyed ``prim:Message-ID`` ...).  Never used to rewrite the octets.
    """
    end = data.find(b"\r\n\r\n")
    head = data[: end if end != -1 else len(data)].decode("utf-8", "replace")
    prefixes: dict[str, str] = {}
    pairs = []
    for line in head.split("\r\n"):
        name, colon, value = line.partition(": ")
        if not colon:
            continue
        if name == "NS":
            match = re.match(r"^\s*(?:([^\s<]+)\s*)?<([^>]*)>", value)
            if match:
                prefixes[match.group(1) or ""] = match.group(2)
            continue
        pairs.append((name, value))
    out: dict[str, str] = {}
    for name, value in pairs:
        if "." in name:
            prefix, _, local = name.partition(".")
            if prefixes.get(prefix) == PRIM_NS:
                out.setdefault("prim:" + local, value)
            continue
        out.setdefault(name, value)
    return out




# --------------------------------------------------------------- SEND <-> message


def send_to_message(request: Request, *, origin: str, now: float) -> Message:
    """A PRIM SEND -> hub ``message``.  ``message/cpim`` bodies are carried byte for byte."""
    source = prim_address(request.header("From"), IM, "From")
    destination = prim_address(request.header("To"), IM, "To")
    content_type = request.header("Content-Type")
    if not content_type:
        raise PrimError("SEND needs a Content-Type")
    message_id = message_id_of(request)
    conversation_id = request.header("Conversation-ID")
    date_value = request.header("Date")
    source_instance = request.header(FROM_INSTANCE_HEADER)
    destination_instance = request.header(TO_INSTANCE_HEADER)
    when = parse_date(date_value) if date_value else now_utc(now)
    max_forwards = int(request.header(MAX_FORWARDS_HEADER) or DEFAULT_MAX_FORWARDS)
    media, params = _split_content_type(content_type)
    if media == MEDIA_CPIM:
        content = Content(media, request.body, params)
    else:
        content = Content(
            MEDIA_CPIM,
            wrap_cpim(source, destination, content_type, request.body, date_time=when,
                      message_id=message_id, conversation_id=conversation_id,
                      reply_to=request.header("Reply-To")),
        )
    return Message(
        source=source,
        destination=destination,
        content=content,
        max_forwards=max_forwards,
        message_id=unescape_token(message_id) if message_id else None,
        origin=origin,
        source_instance=unescape_token(source_instance) if source_instance else None,
        destination_instance=unescape_token(destination_instance) if destination_instance else None,
        conversation_id=(unescape_token(conversation_id)
                         if conversation_id and conversation_id.strip() != (message_id or "") else None),
    )


def message_to_send(message: Message, *, now: float, astrength: Optional[str] = None,
                    max_forwards_header: bool = True) -> tuple[list[tuple[str, str]], bytes]:
    """A hub ``message`` -> SEND headers and body (the content octets unchanged)."""
    content = message.content
    cpim = cpim_headers(content.body) if content.media_type == MEDIA_CPIM else {}
    # The PRIM Message-ID the message was born with (in the Message/CPIM object) wins over
    # the id another network gave it on the way (SIP Call-ID...), so a round trip keeps it.
    message_id = cpim.get("prim:Message-ID") or message.message_id or message.trans_id
    # No conversation known: the message is a conversation of its own (see the module docstring).
    conversation_id = cpim.get("prim:Conversation-ID") or message.conversation_id or message_id
    when = now_utc(now)
    if "DateTime" in cpim:
        try:
            when = date_from_rfc3339(cpim["DateTime"].strip())
        except ValueError:
            pass
    headers = [
        ("From", str(message.source.as_im())),
        ("To", str(message.destination.as_im())),
        ("Message-ID", _token(message_id)),
        ("Conversation-ID", _token(conversation_id)),
        ("Date", format_date(when)),
    ]
    reply_to = cpim.get("prim:Reply-To")
    if reply_to:
        headers.append(("Reply-To", reply_to))
    if message.source_instance:
        headers.append((FROM_INSTANCE_HEADER, _token(message.source_instance)))
    if message.destination_instance:
        headers.append((TO_INSTANCE_HEADER, _token(message.destination_instance)))
    if astrength:
        headers.append(("AStrength", astrength))
    if max_forwards_header:
        headers.append((MAX_FORWARDS_HEADER, str(message.max_forwards)))
    headers.append(("Content-Type", content.content_type))
    return headers, content.body


_SAFE_VALUE = re.compile(r"^[A-Za-z0-9!$&'*.+\-/=?_~%:;@,]+$")
_UNRESERVED = re.compile(r"[^A-Za-z0-9!$&'*.+\-/=?_~%@]")


def _token(value: str) -> str:
    """``1*(unreserved / escaped)``: %-escape anything else.

    ``@`` stays as it is: PRIM user agents write ``local@domain`` Message-IDs
    (RFC 2822 §3.6.4 ``msg-id`` form) and read them back verbatim; an escaped
    ``%40`` would be another id to them.
    """
    return _UNRESERVED.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8")), value)


def unescape_token(text: str) -> str:
    """The value of a ``1*(unreserved / escaped)`` field: the inverse of :func:`_token`.

    Only a wire form that is exactly the canonical escape of its value is
    unescaped, so that any text read and written again is the same octets
    (``m%3b`` or a stray ``%`` stay as written).
    """
    text = text.strip()
    if "%" not in text:
        return text
    try:
        value = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return text
    return value if _token(value) == text else text




# --------------------------------------------------------------- presence


def subscribe_from_request(request: Request, *, origin: str, known_id: Optional[str] = None) -> Subscribe:
    """SUBSCRIBE / UNSUBSCRIBE / FETCH -> hub ``subscribe`` (RFC 3859 §4.4.3 semantics)."""
    watcher = prim_address(request.header("From"), PRES, "From")
    target = prim_address(request.header("To"), PRES, "To")
    if request.method == "UNSUBSCRIBE":
        return Subscribe(watcher, target, 0, subscript_id=known_id or new_id(), origin=origin,
                         watcher_instance=unescape_token(request.header(FROM_INSTANCE_HEADER) or "") or None)
    instance = request.header(FROM_INSTANCE_HEADER)
    watcher_instance = unescape_token(instance) if instance else None
    if request.method == "FETCH":
        return Subscribe(watcher, target, 0, subscript_id=new_fetch_id(), origin=origin,
                         watcher_instance=watcher_instance)
    duration_text = request.header("Duration")
    if duration_text is None:
        raise PrimError("SUBSCRIBE needs a Duration")
    duration = int(duration_text)
    if duration > 2**31 - 1:
        raise PrimError("Duration is larger than 2147483647")
    subscript_id = request.header("Subscription-ID") or known_id or new_id()
    max_forwards = int(request.header(MAX_FORWARDS_HEADER) or DEFAULT_MAX_FORWARDS)
    return Subscribe(watcher, target, duration, subscript_id=subscript_id[:160], origin=origin,
                     max_forwards=max_forwards, watcher_instance=watcher_instance)


def subscribe_to_request(op: Subscribe, *, now: float, astrength: Optional[str] = None,
                         fetch_method: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """Hub ``subscribe`` -> (method, headers): server-00 SUBSCRIBE (Duration 0 for cancel and fetch).

    :param fetch_method: a fetch (:func:`cpimgw.cpim.operations.is_fetch_id`) is the -01 ``FETCH``
        command (``cpimgw translate``; a server-00 peer gets SUBSCRIBE Duration 0).
    """
    headers = [
        ("From", str(op.watcher.as_pres())),
        ("To", str(op.target.as_pres())),
        ("Duration", str(op.duration)),
        ("Subscription-ID", _token(op.subscript_id)),
        ("Date", format_date(now_utc(now))),
        (MAX_FORWARDS_HEADER, str(op.max_forwards)),
    ]
    if op.watcher_instance:
        headers.append((FROM_INSTANCE_HEADER, _token(op.watcher_instance)))  # the watcher's device (RFC 7248 §4)
    if astrength:
        headers.append(("AStrength", astrength))
    if fetch_method and op.duration == 0 and is_fetch_id(op.subscript_id):
        # -01 §13: FETCH asks for the state once; it names no subscription.
        return "FETCH", [(name, value) for name, value in headers if name not in ("Duration", "Subscription-ID")]
    return "SUBSCRIBE", headers


def subscribe_response_headers(op: Subscribe, response: CPIMResponse) -> list[tuple[str, str]]:
    duration = response.duration if response.duration is not None else op.duration
    return [
        ("From", str(op.watcher.as_pres())),
        ("To", str(op.target.as_pres())),
        ("Duration", str(duration)),
        ("Subscription-ID", _token(op.subscript_id)),
    ]


def subscribe_code(op: Subscribe, response: CPIMResponse) -> int:
    """200, or 201 Duration Adjusted when the granted duration differs from the asked one."""
    code = prim_code(response, "SUBSCRIBE")
    if code == 200 and response.status is Status.SUCCESS and response.duration is not None and response.duration != op.duration:
        return 201
    return code


def presence_content(content_type: str, body: bytes, *, entity: Optional[CPIMURI] = None) -> Content:
    """The hub presence of a NOTIFY/PUBLISH body.

    PIDF (``application/pidf+xml``, or the draft name ``application/cpim-pidf+xml``) is
    carried byte for byte; so is a signed PIDF (``multipart/signed`` whose first part
    is a PIDF document of ``entity``, :func:`cpimgw.cpim.signed.signed_pidf`);
    ``message/cpim`` wrapping PIDF is unwrapped to the inner
    PIDF octets (unchanged); the legacy ``application/presence`` document (alone or in
    ``multipart/mixed``) is converted to PIDF (digest §2.10).
    """
    media, params = _split_content_type(content_type)
    if media in (MEDIA_PIDF, OLD_PIDF):
        return Content(MEDIA_PIDF, body, params)
    if media == MEDIA_CPIM:
        end = body.find(b"\r\n\r\n")
        inner = body[end + 4:] if end != -1 else b""
        inner_end = inner.find(b"\r\n\r\n")
        inner_head = inner[:inner_end].decode("utf-8", "replace") if inner_end != -1 else ""
        inner_type = ""
        for line in inner_head.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                inner_type = value.strip()
        if _split_content_type(inner_type)[0] in (MEDIA_PIDF, OLD_PIDF):
            return Content(MEDIA_PIDF, inner[inner_end + 4:])
        raise PrimError("message/cpim presence does not wrap a PIDF document")
    if media == MEDIA_SIGNED:
        # RFC 3863 §4 / RFC 3859 end-to-end security: checked (a PIDF of this presentity inside),
        # then relayed octet for octet.
        try:
            signed_pidf(body, params, entity)
        except ParseError as error:
            raise PrimError(error.reason) from None
        return Content(MEDIA_SIGNED, body, params)
    if media in (LEGACY_PRESENCE, "multipart/mixed"):
        from cpimgw.adapters.prim.presence_doc import legacy_to_pidf

        return Content(MEDIA_PIDF, legacy_to_pidf(content_type, body, entity=entity))
    raise PrimError(f"presence of type {media} is not understood")


def notify_from_request(request: Request, *, origin: str) -> Notify:
    """NOTIFY -> hub ``notify`` (Duration: 0 = the presentity side ended it)."""
    target = prim_address(request.header("From"), PRES, "From")
    watcher = prim_address(request.header("To"), PRES, "To")
    subscript_id = request.header("Subscription-ID")
    if not subscript_id:
        raise PrimError("NOTIFY needs a Subscription-ID")
    duration_text = request.header("Duration")
    duration = int(duration_text) if duration_text is not None else None
    presence = None
    if request.body:
        presence = presence_content(request.header("Content-Type") or MEDIA_PIDF, request.body, entity=target)
    terminated = duration == 0
    state = SubscriptionState.TERMINATED if terminated else SubscriptionState.ACTIVE
    reason = TerminationReason.DEACTIVATED if terminated else None
    carried = request.header(SUBSCRIPTION_STATE_HEADER)
    if carried:
        state, reason = parse_subscription_state(carried)
    return Notify(
        watcher=watcher,
        target=target,
        presence=presence,
        subscript_id=subscript_id[:160],
        state=state,
        expires=duration,
        reason=reason,
        origin=origin,
    )


def format_subscription_state(state: SubscriptionState, reason: Optional[TerminationReason]) -> Optional[str]:
    """The ``X-Subscription-State`` value for a notify, or ``None`` when ``Duration`` says it all.

    ``active`` is a NOTIFY's own meaning, and ``terminated;reason=deactivated``
    what ``Duration: 0`` means (digest §2.12); anything else is written in
    the RFC 6665 §4.1.3 syntax.
    """
    if state is SubscriptionState.ACTIVE:
        return None
    if state is SubscriptionState.TERMINATED:
        if reason is TerminationReason.DEACTIVATED:
            return None
        return "terminated" + (f";reason={reason.value}" if reason is not None else "")
    return state.value


def parse_subscription_state(value: str) -> tuple[SubscriptionState, Optional[TerminationReason]]:
    """An ``X-Subscription-State`` value -> (state, reason); unknown states are pending (RFC 6665 §4.1.3)."""
    head, *params = [part.strip() for part in value.split(";")]
    try:
        state = SubscriptionState(head.lower())
    except ValueError:
        state = SubscriptionState.PENDING
    reason = None
    for param in params:
        key, _, text = param.partition("=")
        if key.strip().lower() == "reason":
            try:
                reason = TerminationReason(text.strip().lower())
            except ValueError:
                reason = None
    if state is not SubscriptionState.TERMINATED:
        reason = None
    return state, reason


def notify_to_request(op: Notify, *, now: float, astrength: Optional[str] = None) -> tuple[list[tuple[str, str]], bytes]:
    """Hub ``notify`` -> NOTIFY headers and body (the PIDF octets unchanged)."""
    headers = [
        ("From", str(op.target.as_pres())),
        ("To", str(op.watcher.as_pres())),
        ("Subscription-ID", _token(op.subscript_id)),
        ("Date", format_date(now_utc(now))),
    ]
    if op.state is SubscriptionState.TERMINATED:
        headers.append(("Duration", "0"))
    elif op.expires is not None:
        headers.append(("Duration", str(op.expires)))
    carried = format_subscription_state(op.state, op.reason)
    if carried is not None:
        headers.append((SUBSCRIPTION_STATE_HEADER, carried))
    if astrength:
        headers.append(("AStrength", astrength))
    body = b""
    if op.presence is not None:
        headers.append(("Content-Type", op.presence.content_type))
        body = op.presence.body
    return headers, body


def publish_from_request(request: Request, presentity: CPIMURI, *, origin: str, instance: Optional[str]) -> Publish:
    """PUBLISH (-01/-02) -> hub ``Publish`` of the tuple's presence."""
    content_type = request.header("Content-Type")
    if not request.body or not content_type:
        raise PrimError("PUBLISH needs a presence body with a Content-Type")
    presence = presence_content(content_type, request.body, entity=presentity.as_pres())
    duration = request.header("Duration")
    pi_type = request.header("PI-Type", "permanent")
    return Publish(
        presentity=presentity.as_pres(),
        presence=presence,
        origin=origin,
        instance=instance,
        expires=int(duration) if duration and pi_type in ("leased", "renew") else None,
    )
