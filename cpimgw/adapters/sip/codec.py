"""The ``sip`` native codec for ``cpimgw parse sip FILE`` and ``cpimgw translate --from/--to sip``.

- ``parse``: one SIP message (RFC 3261 §7) -> JSON: start line, headers in
  order as written (name, value), the structured views of the core headers
  (Via, From, To, CSeq, Content-Type...) and the body (UTF-8 text when it
  decodes, else base64).
- ``to_operation``: MESSAGE -> ``Message`` (RFC 3428/7572 mapping),
  SUBSCRIBE -> ``Subscribe``, NOTIFY -> ``Notify``, PUBLISH -> ``Publish``
  (:mod:`cpimgw.adapters.sip.mapping`).
- a final response <-> the CPIM ``response`` (RFC 7247 §7 conditions; the
  reason names the SIP status, so SIP gets the same code back).
- ``from_operation``: ``Message`` -> MESSAGE, ``Notify`` -> NOTIFY,
  ``Subscribe`` -> SUBSCRIBE, ``Publish`` -> PUBLISH; with a placeholder Via
  (``SIP/2.0/UDP gateway.invalid``) because no transport was chosen.  The
  codec keeps no ESC state, so a ``Publish``'s instance (a PRIM Tuple-ID, an
  XMPP resource) is written as the entity-tag of its lineage
  (``SIP-If-Match``, RFC 3903 §4.1: one lineage = one instance) and read
  back from it; a PUBLISH without ``Expires`` maps to a publication without
  a lifetime (a PRIM ``permanent`` one) and back.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import unquote
from typing import Any

from cpimgw.cpim.errors import ParseError
from cpimgw.adapters.sip.errors import condition_for_status, status_for_condition
from cpimgw.cpim.interworking import tag_reason, tagged_status
from cpimgw.cpim.operations import FETCH_PREFIX, Message, Notify, Publish, Status, Subscribe, is_fetch_id, new_id
from cpimgw.cpim.operations import Response as CPIMResponse
from cpimgw.adapters.sip import mapping
from cpimgw.adapters.sip.wire import Request, Response, parse_message

PLACEHOLDER_VIA = "SIP/2.0/UDP gateway.invalid;branch=z9hG4bK"


class OperationNotCarriedError(ParseError):
    syntax = "sip"


def _body(body: bytes) -> dict[str, str]:
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def message_to_dict(message: Request | Response) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(message, Request):
        out.update(kind="request", method=message.method, uri=message.uri)
    else:
        out.update(kind="response", status=message.status, reason=message.reason)
    out["version"] = message.version
    out["headers"] = [[name, value] for name, value in message.headers]
    out["via"] = [{"transport": v.transport, "sent_by": v.sent_by, "params": [list(p) for p in v.params]}
                  for v in message.vias]
    for key in ("from", "to"):
        addr = message.from_ if key == "from" else message.to
        out[key] = {"display": addr.display, "uri": addr.uri, "params": [list(p) for p in addr.params]}
    number, method = message.cseq
    out["cseq"] = {"number": number, "method": method}
    out["call_id"] = message.call_id
    out["content_type"] = message.get("content-type")
    out["body"] = _body(message.body)
    return out


def response_to_cpim(response: Response) -> CPIMResponse:
    """A SIP final response -> the CPIM ``response`` (RFC 3428 §7: 202 is indeterminant; RFC 7247 §7 conditions).

    The reason names the SIP status (:func:`cpimgw.cpim.interworking.tag_reason`), so that SIP gets the
    very code back where the condition table is many to one.
    """
    code = response.status
    if code < 200:
        raise OperationNotCarriedError(f"a provisional {code} is not a CPIM response (RFC 3261 §8.1.3.2)")
    condition = None
    if code == 202:
        status = Status.INDETERMINANT
    elif code < 300:
        status = Status.SUCCESS
    else:
        status, condition = Status.FAILURE, condition_for_status(code)
    duration = response.expires if 200 <= code < 300 else None
    return CPIMResponse(new_id(), status, tag_reason("SIP", code, response.reason), condition, duration, code)


def response_from_cpim(response: CPIMResponse, call_id: str, tag: str) -> Response:
    """A CPIM ``response`` -> a SIP final response: the SIP status its reason names, else the RFC 7247 §7
    status of its condition (200, 202 for indeterminant)."""
    named, rest = tagged_status(response.reason, "SIP")
    if named is not None:
        code, phrase = int(named), rest
    elif response.status is Status.SUCCESS:
        code, phrase = 200, response.reason
    elif response.status is Status.INDETERMINANT:
        code, phrase = 202, response.reason
    else:
        code, phrase = status_for_condition(response.condition)
        phrase = response.reason or phrase
    headers = [("Via", PLACEHOLDER_VIA + secrets.token_hex(6)), ("From", f"<sip:gateway.invalid>;tag={tag}"),
               ("To", "<sip:gateway.invalid>"), ("Call-ID", call_id), ("CSeq", "1 MESSAGE")]
    if response.duration is not None:
        headers.append(("Expires", str(response.duration)))
    return Response(code, mapping._header_safe(phrase) or "Status", tuple(headers))


class SipCodec:
    """``INativeCodec`` ``sip`` (registered by twisted/plugins/cpimgw_sip.py)."""

    name = "sip"

    def parse(self, data: bytes) -> dict[str, Any]:
        return message_to_dict(parse_message(data))

    def to_operation(self, data: bytes) -> Any:
        message = parse_message(data)
        if not isinstance(message, Request):
            return response_to_cpim(message)
        if message.method == "MESSAGE":
            return mapping.message_from_sip(message)
        if message.method == "SUBSCRIBE":
            sid = mapping.subscript_id_for(message.call_id, message.from_.tag)
            if message.expires == 0 and message.call_id.startswith(FETCH_PREFIX):
                sid = message.call_id.split("@", 1)[0]  # a fetch's own dialog (see from_operation)
            return mapping.subscribe_from_sip(message, subscript_id=sid)
        if message.method == "NOTIFY":
            watcher = mapping.sip_to_cpim(message.to.uri, "pres").uri
            target = mapping.sip_to_cpim(message.from_.uri, "pres").uri
            sid = mapping.subscript_id_for(message.call_id, message.to.tag)
            return mapping.notify_from_sip(message, watcher=watcher, target=target, subscript_id=sid)
        if message.method == "PUBLISH":
            content = mapping.presence_content(message)
            if content is None:
                raise OperationNotCarriedError("a PUBLISH without a body (refresh/remove) carries no presence")
            # The codec is stateless: the entity-tag a PUBLISH names is its lineage, the instance
            # (RFC 3903 §4.1); no Expires stays no Expires (a permanent PRIM publication).
            tag = message.get("sip-if-match")
            return mapping.publish_from_sip(message, instance=unquote(tag) if tag else "sip",
                                            expires=message.expires, presence=content)
        raise OperationNotCarriedError(f"SIP {message.method} has no CPIM operation")

    def from_operation(self, operation: Any) -> bytes:
        call_id = f"{secrets.token_hex(8)}@gateway.invalid"
        tag = secrets.token_hex(4)
        if isinstance(operation, CPIMResponse):
            return response_from_cpim(operation, call_id, tag).to_bytes()
        if isinstance(operation, Message):
            request = mapping.message_to_sip(operation, call_id=call_id, from_tag=tag)
        elif isinstance(operation, Notify):
            body, ctype = mapping.notify_body(operation)
            headers = [
                ("From", f"<{mapping.cpim_to_sip(operation.target)}>;tag={tag}"),
                ("To", f"<{mapping.cpim_to_sip(operation.watcher)}>"),
                ("Call-ID", call_id), ("CSeq", "1 NOTIFY"), ("Event", "presence"),
                ("Subscription-State", mapping.format_subscription_state(
                    operation.state, expires=operation.expires, reason=operation.reason)),
            ]
            if ctype:
                headers.append(("Content-Type", ctype))
            request = Request("NOTIFY", mapping.cpim_to_sip(operation.watcher), tuple(headers), body)
        elif isinstance(operation, Subscribe):
            if operation.duration == 0 and is_fetch_id(operation.subscript_id):
                # RFC 6665 §4.4.3: a fetch is an Expires: 0 SUBSCRIBE that opens a dialog of its own;
                # the codec names that dialog after the fetch, so the translation back knows it.
                call_id = f"{operation.subscript_id}@gateway.invalid"
            request = Request("SUBSCRIBE", mapping.cpim_to_sip(operation.target), (
                ("From", f"<{mapping.cpim_to_sip(operation.watcher, operation.watcher_instance)}>;tag={tag}"),
                ("To", f"<{mapping.cpim_to_sip(operation.target)}>"),
                ("Call-ID", call_id), ("CSeq", "1 SUBSCRIBE"), ("Event", "presence"),
                ("Accept", "application/pidf+xml, multipart/signed"), ("Expires", str(operation.duration)),
            ))
        elif isinstance(operation, Publish):
            uri = mapping.cpim_to_sip(operation.presentity)
            headers = [("From", f"<{uri}>;tag={tag}"), ("To", f"<{uri}>"), ("Call-ID", call_id),
                       ("CSeq", "1 PUBLISH"), ("Event", "presence"),
                       ("Content-Type", operation.presence.content_type)]
            if operation.instance:
                headers.append(("SIP-If-Match", mapping.entity_tag_for(operation.instance)))
            if operation.expires is not None:
                headers.append(("Expires", str(operation.expires)))
            request = Request("PUBLISH", uri, tuple(headers), operation.presence.body)
        else:
            raise OperationNotCarriedError(f"{type(operation).__name__} has no SIP form")
        request = request.add_header("Via", PLACEHOLDER_VIA + secrets.token_hex(6), first=True)
        if not request.has("max-forwards"):
            request = request.add_header("Max-Forwards", "70")
        return request.to_bytes()
