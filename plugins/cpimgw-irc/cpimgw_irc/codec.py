"""The ``irc`` native codec: one IRC line for ``cpimgw parse``, ``cpimgw translate`` and ``cpimgw fidelity``.

A unit is one IRC line (RFC 2812 §2.3, with IRCv3 message tags) as the
gateway's bot receives or sends it; the rules are those of
:mod:`cpimgw_irc.mapping`, the same the adapter runs.  The codec's network
is ``irc.example`` with the bot ``cpimgw`` (:data:`~cpimgw_irc.mapping.DEFAULT_DOMAIN`):
an address in that domain is an IRC user.

- ``parse``: the line's tags, prefix, command and parameters, and what it
  means (a message: from, to, text, NOTICE, ACTION, formatting, time, id;
  a presence line: whose, online, away text).
- ``to_operation``: PRIVMSG/NOTICE -> ``Message``; AWAY, QUIT, JOIN, NICK,
  MONITOR 730/731 -> ``Publish`` of a PIDF document.
- ``from_operation``: ``Message`` -> the line(s) (several when the text
  must be split, RFC 2812 §2.3); ``Publish``/``Notify`` -> AWAY or QUIT.

The fidelity profile (:data:`PROFILE`) compares those meanings, and
:func:`corpus` gives the units ``cpimgw fidelity`` sends through every
other protocol.  ``cpimgw.fidelity`` finds both on the codec
(``fidelity_profile`` attribute, ``corpus()`` method).
"""

from __future__ import annotations

import datetime
from typing import Any

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.message import parse_date_time, parse_message
from cpimgw.cpim.operations import Message, Notify, Operation, Publish
from cpimgw_irc import mapping, wire

NETWORK = mapping.Network()


def _lines(data: bytes) -> list[bytes]:
    lines = wire.split_lines(data)
    if not lines:
        raise wire.IRCParseError("no IRC line", syntax="irc")
    return lines


def _one(data: bytes) -> wire.IRCLine:
    lines = _lines(data)
    if len(lines) > 1:
        raise wire.IRCParseError(f"{len(lines)} lines: a unit is one IRC line", syntax="irc")
    return wire.parse_line(lines[0])


def _meaning(line: wire.IRCLine, network: mapping.Network) -> dict[str, Any]:
    if line.command in ("PRIVMSG", "NOTICE"):
        try:
            message = mapping.message_from_line(line, network)
        except mapping.IRCMappingError as error:
            return {"kind": "unmapped", "reason": error.reason}
        cpim = parse_message(message.content.body)
        stamp = cpim.date_time
        out: dict[str, Any] = {
            "kind": "message", "command": line.command, "from": str(message.source), "to": str(message.destination),
            "text": cpim.body.decode("utf-8"),
        }
        if stamp is not None:
            out["datetime"] = stamp.text
        if message.message_id:
            out["message_id"] = message.message_id
        for _namespace, name, value, _params in cpim.extension_headers:
            if name == "Formatted":
                out["formatted"] = value
            elif name == "Tag":
                out.setdefault("tags", []).append(value)
        return out
    try:
        presentity, state = mapping.presence_from_line(line, network)
    except mapping.IRCMappingError:
        return {"kind": "other"}
    return {"kind": "presence", "presentity": str(presentity), "online": state.online, "away": state.away,
            "note": state.note}


class IRCCodec:
    """``irc``: one IRC line (RFC 2812, IRCv3 message-tags)."""

    name = "irc"
    description = "IRC line (RFC 2812/1459, IRCv3 message-tags), through the cpimgw-irc plugin"

    def __init__(self, network: mapping.Network = NETWORK) -> None:
        self.network = network

    def parse(self, data: bytes) -> dict[str, Any]:
        line = _one(data)
        return {
            "tags": {key: value for key, value in line.tags},
            "prefix": line.prefix,
            "command": line.command,
            "params": list(line.params),
            "meaning": _meaning(line, self.network),
        }

    def to_operation(self, data: bytes) -> Operation:
        line = _one(data)
        if line.command in ("PRIVMSG", "NOTICE"):
            return mapping.message_from_line(line, self.network)
        presentity, state = mapping.presence_from_line(line, self.network)
        return mapping.publish_for(presentity, state)

    def from_operation(self, operation: Operation) -> bytes:
        if isinstance(operation, Message):
            lines = mapping.lines_for_message(operation, self.network,
                                              received_form=self.network.is_irc(operation.source))
            return wire.join_lines(lines)
        if isinstance(operation, (Publish, Notify)):
            presentity = operation.presentity if isinstance(operation, Publish) else operation.target
            state = mapping.state_from_document(mapping.document_of(operation))
            return mapping.line_for_presence(presentity, state, self.network).to_bytes()
        raise mapping.IRCMappingError(
            f"IRC has no {type(operation).__name__.lower()}: a watch is the gateway's own MONITOR/USERHOST")

    def corpus(self) -> list[tuple[str, bytes]]:
        return list(CORPUS)


# -- fidelity ----------------------------------------------------------------------------------------------


def _instant(text: str) -> str:
    try:
        return parse_date_time(text).astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")
    except ValueError:
        return text


def irc_fields(data: bytes, codec: Any) -> Any:
    """The compared fields of one IRC line: its meaning (see :func:`_meaning`)."""
    from cpimgw.fidelity import Fields

    meaning = codec.parse(data)["meaning"]
    values: dict[str, Any] = {}
    for key, value in meaning.items():
        if value is None or value == "" or key == "reason":
            continue
        if key == "datetime":
            value = _instant(value)
        if isinstance(value, list):
            value = tuple(sorted(value))
        values[key] = value
    return Fields(values)


def _make_profile() -> Any:
    from cpimgw.fidelity import Profile

    return Profile(
        name="irc",
        fields=irc_fields,
        excluded={
            "prefix user@host": "the user and host of the client's connection as the IRC server sees it "
                                "(RFC 2812 §2.3.1): not part of the address, which is the nick",
            "tag order": "IRCv3 message tags are a set: compared as one",
            "JOIN channel": "the channel a user joins is membership, not presence (RFC 3860 has no groups)",
            "line framing": "a text longer than one line is several PRIVMSGs (RFC 2812 §2.3): compared per line",
        },
        generated={
            "datetime": "a message without server-time gets the time a far gateway received it (RFC 3862 §4.4)",
            "message_id": "far protocols give every message an id (XMPP id, PRIM Message-ID): it comes back as "
                          "the IRCv3 msgid tag",
            "note": "a far presence document may name the state in a note (e.g. 'offline') that IRC shows",
        },
        split=wire.split_lines,
    )


def __getattr__(name: str) -> Any:
    if name == "PROFILE":
        return _make_profile()
    raise AttributeError(name)


def _line(text: str) -> bytes:
    return text.encode("utf-8") + b"\r\n"


DAN = ":dan!~dan@client.example"
CORPUS: tuple[tuple[str, bytes], ...] = (
    ("privmsg-plain", _line(f"{DAN} PRIVMSG cpimgw :alice@xmpp.example: Hello from IRC")),
    ("privmsg-server-time", _line(f"@time=2026-04-01T10:00:00.000Z;msgid=m1a2b3 {DAN} PRIVMSG cpimgw "
                                  ":bob@sip.example: with server-time and msgid")),
    ("privmsg-im-scheme", _line(f"{DAN} PRIVMSG cpimgw :im:carol@prim.example, the im: scheme written out")),
    ("notice", _line(f"{DAN} NOTICE cpimgw :alice@xmpp.example: a NOTICE, never answered automatically")),
    ("action", _line(f"{DAN} PRIVMSG cpimgw :\x01ACTION alice@xmpp.example waves\x01")),
    ("formatted", _line(f"{DAN} PRIVMSG cpimgw :alice@xmpp.example: \x02bold\x02, \x0304red\x03 and "
                        "\x1ditalic\x1d")),
    ("unicode", _line(f"{DAN} PRIVMSG cpimgw :alice@xmpp.example: \u3053\u3093\u306b\u3061\u306f \u00e9\u00e8")),
    ("latin-1", f"{DAN} PRIVMSG cpimgw :alice@xmpp.example: caf".encode() + b"\xe9 cr\xe8me\r\n"),
    ("client-tags", _line(f"@+draft/reply=m0;+typing=done;msgid=m2 {DAN} PRIVMSG cpimgw "
                          ":alice@xmpp.example: with client tags")),
    ("away", _line(f"{DAN} AWAY :at lunch")),
    ("back", _line(f"{DAN} AWAY")),
    ("quit", _line(f"{DAN} QUIT :Quit: gone home")),
    ("join", _line(f"{DAN} JOIN #cpimgw")),
    ("monitor-online", _line(":irc.example 730 cpimgw :dan!~dan@client.example")),
    ("monitor-offline", _line(":irc.example 731 cpimgw :dan")),
)


def corpus() -> list[tuple[str, bytes]]:
    """The IRC units of ``cpimgw fidelity``."""
    return list(CORPUS)


__all__ = ["IRCCodec", "CORPUS", "corpus", "irc_fields"]
