"""Pure IRC <-> CPIM rules: addresses, private messages, presence (RFC 2812, RFC 3859/3860/3862/3863).

No sockets, no reactor: the adapter (:mod:`cpimgw_irc.adapter`) and the
codec (:mod:`cpimgw_irc.codec`, ``cpimgw translate``/``cpimgw fidelity``)
run these same functions.

Addresses
    An IRC user is ``im:NICK@DOMAIN`` / ``pres:NICK@DOMAIN`` where DOMAIN is
    the IRC network's domain in the gateway's configuration and NICK is the
    nickname in lower case under the network's case mapping (RFC 2812
    §2.2, ISUPPORT ``CASEMAPPING``); under ``rfc1459`` the specials lower to
    ``{`` ``|`` ``}`` ``^``, which the local part holds as they are (RFC 2822
    ``atext``, RFC 3860 §3), else they are %-escaped.
    A nickname is unique on the whole network (RFC 2812 §1.2.1), so a
    channel member has the same address as anywhere else: channel
    membership is not part of it.  After ``NICK`` the user is reached at the
    new address; the old address is offline (see below) and messages to it
    fail like to any nick that is not online.

Messages (the gateway is one bot client, ``bot``)
    =================================================  =====================================
    IRC (RFC 2812 §3.3)                                CPIM (RFC 3860, RFC 3862)
    =================================================  =====================================
    ``:dan!u@h PRIVMSG bot :alice@xmpp.example: hi``   message dan@DOMAIN -> alice@xmpp.example
    ``:dan!u@h PRIVMSG bot :hi`` (no address)           to the last one who wrote to dan (adapter)
    ``NOTICE`` instead of ``PRIVMSG``                  extension header ``IRC.Command: NOTICE``
    CTCP ``ACTION`` (``/me waves``)                     body ``/me waves`` (the XEP-0245 convention)
    formatting codes (bold, colours...)                body without them; the original in
                                                       ``IRC.Formatted`` (RFC 3862 §3.2 escapes)
    tag ``time`` (IRCv3 server-time)                   ``DateTime``
    tag ``msgid`` (IRCv3 message-ids)                  the operation's message id
    other tags                                         ``IRC.Tag: key=value`` each
    =================================================  =====================================

    Towards IRC the bot sends ``PRIVMSG dan :<alice@xmpp.example> hi``: the
    sender is named in the text because the line comes from the bot.  A
    text longer than one IRC line allows (512 octets with the server's
    prefix, RFC 2812 §2.3) or with line ends is split into several
    messages, each beginning with the sender; the adapter says so in the
    response.  What IRC has no place for -- a subject, languages, cc,
    extension headers other than ``IRC.``, non-text bodies -- is not sent.
    A message for an address outside DOMAIN (the codec's view of a relayed
    message) is written to the RFC 2812 §3.3.1 target ``user%host``.

Presence (RFC 3863, RPID RFC 4480)
    ==========================================  ==================================================
    IRC                                         PIDF tuple ``ID-irc`` (+ ``dm:person``)
    ==========================================  ==================================================
    online (JOIN, MONITOR 730, USERHOST/ISON)   basic ``open``
    ``AWAY :text`` (RPL_AWAY 301, away-notify,  basic ``open``, note ``text``, person
    USERHOST ``-``)                             ``<rpid:activities><rpid:away/>``
    ``AWAY`` without text (back)                basic ``open``
    ``QUIT :text``, MONITOR 731, not in ISON,   basic ``closed``, note ``text``
    ``NICK new`` (for the old nick)
    ==========================================  ==================================================

    From PIDF to IRC (the codec, a watcher's NOTICE): an open tuple with an
    away-like hint (RPID activities away/busy/..., ``<show/>`` away/xa/dnd)
    is ``AWAY :note``; open without one is ``AWAY`` (back); no open tuple
    is ``QUIT :note``.  Several tuples, priorities, contacts, timestamps and
    the rest of RPID have no IRC form.
"""

from __future__ import annotations

import datetime
import html
import re
from typing import Any, Iterable, Sequence

import attrs

from cpimgw.cpim.errors import ParseError, URIError
from cpimgw.cpim.message import build_message, parse_date_time, parse_message
from cpimgw.cpim.operations import MEDIA_CPIM, MEDIA_PIDF, Condition, Content, Message, Notify, Publish
from cpimgw.cpim.pidf import Activities, Note, Person, Status, Tuple, build_pidf, parse_pidf
from cpimgw.cpim.uri import CPIMURI, IM, PRES, parse_uri
from cpimgw_irc import wire

#: The namespace of the ``IRC.`` extension headers (RFC 3862 §5; RFC 2648 URN of RFC 2812).
IRC_NS = "urn:ietf:rfc:2812"
IRC_PREFIX = "IRC"
DEFAULT_DOMAIN = "irc.example"
DEFAULT_BOT = "cpimgw"
TUPLE_ID = "ID-irc"
PERSON_ID = "p-irc"
#: RPID activities (RFC 4480 §3.2) and XMPP shows read as "away" on IRC.
AWAY_ACTIVITIES = frozenset({"away", "busy", "meeting", "on-the-phone", "vacation", "holiday",
                             "permanent-absence", "sleeping", "appointment", "travel"})
AWAY_SHOWS = frozenset({"away", "xa", "dnd"})
CHANNEL_PREFIXES = "#&+!"  # RFC 2812 §1.3 channel names
#: The longest ``:nick!user@host `` the server may put before our lines: RFC 2812 §2.3.1 hostnames
#: are at most 63 octets; ``user`` is at most 10 on most servers (USERLEN).
HOST_ALLOWANCE = 63
USER_ALLOWANCE = 10


class IRCMappingError(ParseError):
    """A unit IRC cannot map, with the CPIM condition that answers it."""

    syntax = "irc"

    def __init__(self, reason: str, condition: Condition = Condition.BAD_REQUEST) -> None:
        super().__init__(reason, syntax="irc")
        self.condition = condition


@attrs.frozen
class Network:
    """The IRC network as the mapping sees it: its domain, the bot's nick, the case mapping."""

    domain: str = DEFAULT_DOMAIN
    bot: str = DEFAULT_BOT
    casemapping: str = "rfc1459"

    def lower(self, nick: str) -> str:
        return wire.irc_lower(nick, self.casemapping)

    def uri(self, nick: str, scheme: str = IM) -> CPIMURI:
        """The ``im:``/``pres:`` URI of ``nick`` on this network."""
        return CPIMURI(scheme, self.lower(nick), self.domain)

    def is_irc(self, uri: CPIMURI) -> bool:
        return uri.domain_key == self.domain.lower().rstrip(".")

    def nick_of(self, uri: CPIMURI) -> str:
        """The nickname a URI of this network names; ``IRCMappingError`` if it is not one."""
        if not self.is_irc(uri):
            raise IRCMappingError(f"{uri} is not on the IRC network {self.domain}", Condition.NO_ROUTE)
        if not wire.valid_nick(uri.user):
            raise IRCMappingError(f"{uri.user!r} is not an IRC nickname (RFC 2812 §2.3.1)", Condition.NOT_FOUND)
        return uri.user

    def is_bot(self, nick: str | None) -> bool:
        return nick is not None and self.lower(nick) == self.lower(self.bot)


@attrs.frozen
class NickState:
    """What IRC knows of a nick's presence."""

    online: bool
    away: str | None = None
    note: str | None = None


# -- addresses in text ---------------------------------------------------------------------------------------

_ADDRESSED = re.compile(r"\A\s*(?:im:)?(?P<address>[^\s@:<>]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])[:,]?(?:\s+|\Z)")
_SENDER = re.compile(r"\A<(?P<address>[^\s<>]+)> ?")


def parse_address(text: str) -> CPIMURI:
    """``user@domain`` or ``im:user@domain`` as an ``im:`` URI."""
    value = text if text.lower().startswith(("im:", "pres:")) else f"im:{text}"
    try:
        return parse_uri(value).as_im()
    except URIError as error:
        raise IRCMappingError(f"{text!r} is not an address: {error.reason}") from None


def split_addressed(text: str) -> tuple[CPIMURI | None, str]:
    """``(destination, rest)`` of a text sent to the bot: ``alice@xmpp.example: hi`` -> alice, ``hi``."""
    match = _ADDRESSED.match(text)
    if match is None:
        return None, text
    return parse_address(match.group("address")), text[match.end():]


def _target_for(uri: CPIMURI, network: Network) -> str:
    if network.is_irc(uri):
        return network.nick_of(uri)
    return f"{uri.user}%{uri.domain}" if uri.user else uri.domain  # RFC 2812 §3.3.1 msgto = user "%" host


def _uri_of_target(target: str, network: Network) -> CPIMURI:
    if "%" in target:
        user, _, host = target.partition("%")
        return parse_address(f"{user}@{host}")
    if not wire.valid_nick(target):
        raise IRCMappingError(f"{target!r} is not a nickname (RFC 2812 §2.3.1)")
    return network.uri(target)


# -- messages: IRC -> CPIM -----------------------------------------------------------------------------------


def is_channel(target: str) -> bool:
    return bool(target) and target[0] in CHANNEL_PREFIXES


def _ext(name: str, value: str) -> tuple[str, str, str, str, tuple]:
    return (IRC_NS, IRC_PREFIX, name, value, ())


def message_from_line(
    line: wire.IRCLine,
    network: Network,
    *,
    default_destination: CPIMURI | None = None,
    now: datetime.datetime | None = None,
    origin: str = "",
) -> Message:
    """The CPIM ``Message`` of a PRIVMSG/NOTICE line.

    Two forms: a line an IRC user sent to the bot (prefix ``nick!user@host``,
    target the bot, text beginning with the destination address, else
    ``default_destination``), and a line the bot sends (no prefix or the
    bot's, text beginning with ``<sender>``).

    :raise IRCMappingError: a channel message (RFC 3860 has no group
        messages), a CTCP other than ACTION, no destination, a bad address.
    """
    if line.command not in ("PRIVMSG", "NOTICE") or len(line.params) < 2:
        raise IRCMappingError(f"{line.command} is not a message (RFC 2812 §3.3)")
    target, text = line.params[0], line.params[-1]
    if is_channel(target):
        raise IRCMappingError(f"{target} is a channel: channel messages are not bridged (RFC 3860 has no groups)",
                              Condition.UNSUPPORTED)
    request = wire.ctcp_parse(text)
    action = False
    if request is not None:
        tag, data = request
        if tag != "ACTION":
            raise IRCMappingError(f"CTCP {tag} is a query to the client, not a message", Condition.UNSUPPORTED)
        action, text = True, data
    extensions = []
    if line.nick is None or network.is_bot(line.nick):
        match = _SENDER.match(text)
        if match is None:
            raise IRCMappingError("a line of the gateway must begin with <sender>")
        source = parse_address(match.group("address"))
        text = text[match.end():]
        destination = _uri_of_target(target, network)
    else:
        if not network.is_bot(target):
            raise IRCMappingError(f"addressed to {target}, not to the gateway {network.bot}", Condition.NO_ROUTE)
        if not wire.valid_nick(line.nick):
            raise IRCMappingError(f"{line.nick!r} is not a nickname (RFC 2812 §2.3.1)")
        source = network.uri(line.nick)
        destination, text = split_addressed(text)
        if destination is None:
            destination = default_destination
        if destination is None:
            raise IRCMappingError("no destination: write 'user@domain: text' to the gateway", Condition.NOT_FOUND)
    if line.command == "NOTICE":
        extensions.append(_ext("Command", "NOTICE"))
    plain = wire.strip_formatting(text)
    if plain != text:
        extensions.append(_ext("Formatted", text))
    if action:
        plain = "/me " + plain
    date_time: Any = now
    stamp = line.tag("time")
    if stamp:
        try:
            parse_date_time(stamp)
            date_time = stamp
        except ValueError:
            extensions.append(_ext("Tag", f"time={stamp}"))
    message_id = line.tag("msgid") or None
    for key, value in line.tags:
        if key in ("time", "msgid"):
            continue
        extensions.append(_ext("Tag", key if value is None else f"{key}={value}"))
    cpim = build_message(source, [destination], plain.encode("utf-8"), "text/plain; charset=utf-8",
                         date_time=date_time, extensions=extensions)
    return Message(source, destination, Content(MEDIA_CPIM, cpim.to_bytes()), message_id=message_id, origin=origin)


# -- messages: CPIM -> IRC -----------------------------------------------------------------------------------


@attrs.frozen
class Outgoing:
    """What a CPIM message says in IRC terms, before it is written as lines."""

    text: str
    command: str = "PRIVMSG"
    formatted: str | None = None
    date_time: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()


def _charset(content_type: str) -> str:
    match = re.search(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:-]+)", content_type or "", re.I)
    return match.group(1) if match else "utf-8"


def _text_of(body: bytes, content_type: str) -> str:
    media = (content_type or "text/plain").split(";", 1)[0].strip().lower()
    try:
        text = body.decode(_charset(content_type))
    except (LookupError, UnicodeDecodeError):
        raise IRCMappingError(f"the {media} body is not in its declared charset", Condition.NOT_ACCEPTABLE) from None
    if media == "text/plain":
        return text
    if media in ("text/html", "application/xhtml+xml"):
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", text)
        text = re.sub(r"(?i)<br\s*/?>|</p>", "\n", text)
        return html.unescape(re.sub(r"<[^>]*>", "", text)).strip("\n")
    raise IRCMappingError(f"IRC carries text only, not {media}", Condition.UNSUPPORTED_MEDIA)


def outgoing(message: Message) -> Outgoing:
    """Read what IRC can carry of a CPIM message: its text, NOTICE, the formatted original, DateTime, tags."""
    content = message.content
    if content.media_type != MEDIA_CPIM:
        return Outgoing(_text_of(content.body, content.content_type))
    try:
        cpim = parse_message(content.body)
    except ParseError as error:
        raise IRCMappingError(f"the Message/CPIM content does not parse: {error.reason}") from None
    text = _text_of(cpim.body, cpim.content_type)
    command = "PRIVMSG"
    formatted = None
    tags: list[tuple[str, str | None]] = []
    for namespace, name, value, _params in cpim.extension_headers:
        if namespace != IRC_NS:
            continue
        if name == "Command" and value.upper() == "NOTICE":
            command = "NOTICE"
        elif name == "Formatted":
            formatted = value
        elif name == "Tag":
            key, equals, tag_value = value.partition("=")
            tags.append((key, tag_value if equals else None))
    stamp = cpim.date_time
    date_time = None
    if stamp is not None:
        value = getattr(stamp, "value", None)
        date_time = utc_stamp(value) if isinstance(value, datetime.datetime) else None
    if formatted is not None and ("/me " + wire.strip_formatting(formatted) if text.startswith("/me ")
                                  else wire.strip_formatting(formatted)) != text:
        formatted = None  # edited on the way: the plain text wins
    return Outgoing(text, command, formatted, date_time, tuple(tags))


def utc_stamp(value: datetime.datetime) -> str:
    """IRCv3 server-time form: UTC, milliseconds, ``Z``."""
    value = value.astimezone(datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def own_prefix_length(network: Network, user: str | None = None, host_length: int = HOST_ALLOWANCE) -> int:
    """Octets of ``:nick!user@host `` the server adds to our lines (``host_length`` when the host is unknown)."""
    return 1 + len(network.bot.encode()) + 1 + max(len((user or "").encode()), USER_ALLOWANCE) + 1 + host_length + 1


def lines_for_message(
    message: Message,
    network: Network,
    *,
    prefix_length: int | None = None,
    received_form: bool = False,
) -> list[wire.IRCLine]:
    """The IRC lines of a CPIM message.

    ``received_form``: the line as the bot receives it from an IRC user of
    the network (the message's source is on IRC); else the lines the bot
    sends.  Text that does not fit one line (or has line ends) becomes
    several lines (RFC 2812 §2.3).
    """
    out = outgoing(message)
    if "\x00" in out.text:
        raise IRCMappingError("IRC cannot carry NUL in a message (RFC 2812 §2.3.1)")
    action = out.text.startswith("/me ")
    text = out.formatted if out.formatted is not None else out.text
    if action and out.formatted is None:
        text = text[4:]
    command = out.command
    if received_form:
        nick = network.nick_of(message.source)
        head = f"{message.destination.address}: "
        target = network.bot
        own_prefix = f"{nick}!{nick}@{network.domain}"
        prefix: str | None = own_prefix
        tags: list[tuple[str, str | None]] = []
        if message.message_id:
            tags.append(("msgid", message.message_id))
        if out.date_time:
            tags.append(("time", out.date_time))
        tags.extend(out.tags)
        own = 1 + len(own_prefix.encode()) + 1
    else:
        head = f"<{message.source.address}> "
        target = _target_for(message.destination, network)
        prefix = None
        tags = []
        own = prefix_length if prefix_length is not None else own_prefix_length(network)
    budget = wire.message_budget(own, command, target) - len(head.encode("utf-8")) - (9 if action else 0)
    lines = []
    for piece in wire.split_text(text, budget):
        body = head + piece
        if action:
            body = wire.ctcp("ACTION", body)
        lines.append(wire.IRCLine(command, (target, body), prefix, tuple(tags)))
    return lines


# -- presence ------------------------------------------------------------------------------------------------


def presence_document(presentity: CPIMURI, state: NickState) -> bytes:
    """The PIDF document (RFC 3863, RPID RFC 4480) of what IRC knows of a nick."""
    notes = []
    persons = []
    if state.online and state.away is not None:
        notes.append(Note(state.away or "away"))
        persons.append(Person(PERSON_ID, activities=[Activities(values=("away",))]))
    elif state.note:
        notes.append(Note(state.note))
    item = Tuple(TUPLE_ID, Status("open" if state.online else "closed"), notes=notes)
    return build_pidf(presentity.as_pres(), [item], persons=persons).to_bytes()


def state_from_document(data: bytes) -> NickState:
    """What IRC can say of a PIDF document: online or not, away with a text or not."""
    document = parse_pidf(data)
    open_tuples = [item for item in document.tuples if item.status.basic == "open"]
    notes = [note.text for item in (open_tuples or document.tuples) for note in item.notes]
    notes += [note.text for note in document.notes]
    notes += [note.text for person in document.persons for note in person.notes]
    note = notes[0] if notes else None
    if not open_tuples:
        return NickState(False, None, note)
    away = any(item.status.xmpp_show in AWAY_SHOWS or (item.status.im or "").lower() in AWAY_SHOWS | {"busy"}
               for item in open_tuples)
    away = away or any(value in AWAY_ACTIVITIES for person in document.persons
                       for activities in person.activities for value in activities.values)
    return NickState(True, (note or "away") if away else None, None if away else note)


def presence_from_line(line: wire.IRCLine, network: Network) -> tuple[CPIMURI, NickState]:
    """The presentity and state an AWAY, QUIT, JOIN, NICK or MONITOR (730/731) line reports."""
    command = line.command
    if command in ("730", "731"):  # IRCv3 MONITOR: RPL_MONONLINE / RPL_MONOFFLINE, "nick!user@host,..."
        first = (line.params[-1] if line.params else "").split(",")[0]
        nick = first.split("!", 1)[0]
        if not nick:
            raise IRCMappingError(f"{command} names no nick")
        return network.uri(nick, PRES), NickState(command == "730")
    nick = line.nick or ""
    if "%" in nick:  # the codec's form of a presentity of another network (RFC 2812 §3.3.1 user%host)
        presentity = _uri_of_target(nick, network).as_pres()
    elif not nick or not wire.valid_nick(nick):
        raise IRCMappingError(f"{command} without a user prefix says nothing of anybody's presence")
    else:
        presentity = network.uri(nick, PRES)
    if command == "AWAY":
        text = line.params[0] if line.params else ""
        return presentity, NickState(True, text if text else None)
    if command == "QUIT":
        return presentity, NickState(False, None, line.params[0] if line.params else None)
    if command == "JOIN":
        return presentity, NickState(True)
    if command == "NICK" and line.params:
        return presentity, NickState(False, None, f"now known as {line.params[0]}")
    raise IRCMappingError(f"{command} is not a presence line (AWAY, QUIT, JOIN, NICK, 730, 731)")


def line_for_presence(presentity: CPIMURI, state: NickState, network: Network) -> wire.IRCLine:
    """The line (as the bot receives it) that says ``state`` of ``presentity``: AWAY or QUIT."""
    nick = network.nick_of(presentity) if network.is_irc(presentity) else f"{presentity.user}%{presentity.domain}"
    prefix = f"{nick}!{nick}@{network.domain}"
    if not state.online:
        return wire.IRCLine("QUIT", (state.note or "offline",), prefix)
    if state.away is not None:
        return wire.IRCLine("AWAY", (state.away or "away",), prefix)
    return wire.IRCLine("AWAY", (), prefix)


def presence_text(target: CPIMURI, state: NickState) -> str:
    """The NOTICE an IRC watcher reads for a presence change."""
    if not state.online:
        return f"{target.address} is offline" + (f": {state.note}" if state.note else "")
    if state.away is not None:
        return f"{target.address} is away: {state.away}"
    return f"{target.address} is online" + (f": {state.note}" if state.note else "")


def publish_for(presentity: CPIMURI, state: NickState, *, origin: str = "") -> Publish:
    return Publish(presentity=presentity.as_pres(),
                   presence=Content(MEDIA_PIDF, presence_document(presentity, state)),
                   origin=origin, instance="irc")


def document_of(operation: Publish | Notify) -> bytes:
    if operation.presence is None:
        raise IRCMappingError("a notify without a presence document (pending) has no IRC form")
    if operation.presence.media_type != MEDIA_PIDF:
        raise IRCMappingError(f"IRC reads PIDF, not {operation.presence.media_type}", Condition.UNSUPPORTED_MEDIA)
    return operation.presence.body


def iter_watch_targets(text: str) -> Iterable[CPIMURI]:
    for word in text.split():
        yield parse_address(word).as_pres()


__all__: Sequence[str] = [
    "IRC_NS", "IRCMappingError", "Network", "NickState", "message_from_line", "lines_for_message", "outgoing",
    "presence_document", "state_from_document", "presence_from_line", "line_for_presence", "presence_text",
    "publish_for", "split_addressed", "parse_address", "utc_stamp", "own_prefix_length",
]
