"""The ``prim`` native codec for ``cpimgw parse prim FILE`` and ``cpimgw translate --from/--to prim``.

One file holds one PRIM command (draft-ietf-prim-server-00 §4 framing; the
start line carries the body length).  ``to_operation`` maps it with
:mod:`cpimgw.adapters.prim.mapping` (SEND -> message, SUBSCRIBE /
UNSUBSCRIBE / FETCH -> subscribe, NOTIFY -> notify, PUBLISH -> publish, a
response -> the CPIM response whose reason names the PRIM status);
``from_operation`` gives the server-00 command for an operation (message ->
SEND, subscribe -> SUBSCRIBE, notify -> NOTIFY, publish -> PUBLISH), bodies
octet for octet.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from cpimgw.adapters.prim import mapping, wire
from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.interworking import tagged_status
from cpimgw.cpim.operations import Message, Notify, Publish, Subscribe, new_id
from cpimgw.cpim.operations import Response as CPIMResponse


class NotCarriedError(ParseError):
    """A PRIM command or an operation with no counterpart on the other side."""

    syntax = "translate"


def to_dict(command: wire.Command) -> dict[str, Any]:
    """The JSON form of a command (the body as text when it is UTF-8, else base64)."""
    out: dict[str, Any] = {"version": command.version, "request_id": command.request_id}
    if isinstance(command, wire.Request):
        out = {"kind": "request", "method": command.method, **out}
    else:
        out = {"kind": "response", **out, "code": command.code, "phrase": command.phrase}
    out["headers"] = [[name, value] for name, value in command.headers]
    out["length"] = len(command.body)
    try:
        out["body"] = command.body.decode("utf-8")
    except UnicodeDecodeError:
        out["body_base64"] = base64.b64encode(command.body).decode("ascii")
    return out


def to_operation(data: bytes, *, origin: str = "prim") -> Any:
    command = wire.parse_command(data)
    if not isinstance(command, wire.Request):
        if command.code == 100:
            raise NotCarriedError("a PRIM 100 continues a login (an authentication challenge): no CPIM response")
        # The CPIM response; its reason names the PRIM status (interworking.tag_reason).
        return mapping.cpim_response(new_id(), command)
    method = command.method
    if method == "SEND":
        return mapping.send_to_message(command, origin=origin, now=time.time())
    if method in ("SUBSCRIBE", "UNSUBSCRIBE", "FETCH"):
        return mapping.subscribe_from_request(command, origin=origin)
    if method == "NOTIFY":
        return mapping.notify_from_request(command, origin=origin)
    if method == "PUBLISH":
        presentity = mapping.prim_address(command.header("From"), "pres", "From")
        return mapping.publish_from_request(command, presentity, origin=origin, instance=command.header("Tuple-ID"))
    raise NotCarriedError(f"PRIM {method} has no CPIM operation")


def response_from_cpim(response: CPIMResponse, request_id: str = "1") -> wire.Response:
    """A CPIM ``response`` -> a PRIM response: the PRIM status its reason names, else the digest §2.12
    status of its condition."""
    named, rest = tagged_status(response.reason, "PRIM")
    if named is not None:
        code, phrase = int(named), rest
    else:
        code = mapping.prim_code(response, "SUBSCRIBE" if response.duration is not None else "SEND")
        phrase = response.reason
    headers = [("Duration", str(response.duration))] if response.duration is not None else []
    return wire.Response(request_id, code, " ".join(phrase.split()), tuple(headers))


def from_operation(operation: Any, *, request_id: str = "1") -> bytes:
    now = time.time()
    if isinstance(operation, CPIMResponse):
        return response_from_cpim(operation, request_id).to_bytes()
    if isinstance(operation, Message):
        headers, body = mapping.message_to_send(operation, now=now)
        return wire.Request("SEND", request_id, tuple(headers), body).to_bytes()
    if isinstance(operation, Subscribe):
        method, headers = mapping.subscribe_to_request(operation, now=now, fetch_method=True)
        return wire.Request(method, request_id, tuple(headers)).to_bytes()
    if isinstance(operation, Notify):
        headers, body = mapping.notify_to_request(operation, now=now)
        return wire.Request("NOTIFY", request_id, tuple(headers), body).to_bytes()
    if isinstance(operation, Publish):
        headers = [("From", str(operation.presentity.as_pres())), ("Tuple-ID", operation.instance or "default"),
                   ("PI-Type", "leased" if operation.expires else "permanent")]
        if operation.expires:
            headers.append(("Duration", str(operation.expires)))
        headers.append(("Content-Type", operation.presence.content_type))
        return wire.Request("PUBLISH", request_id, tuple(headers), operation.presence.body).to_bytes()
    raise NotCarriedError(f"PRIM has no command for {type(operation).__name__}")


class PrimCodec:
    """``prim``: one PRIM command (INativeCodec; the plugin module declares the interfaces)."""

    name = "prim"
    description = "PRIM command (draft-ietf-prim-server-00, draft-mazzoldi-prim-impp-01/-02)"

    def parse(self, data: bytes) -> dict[str, Any]:
        return to_dict(wire.parse_command(data))

    def to_operation(self, data: bytes) -> Any:
        return to_operation(data)

    def from_operation(self, operation: Any) -> bytes:
        return from_operation(operation)
