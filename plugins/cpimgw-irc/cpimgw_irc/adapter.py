"""The IRC adapter: one bot client on an IRC network, attached to the cpimgw bus.

Connection (RFC 2812 §3.1, IRCv3 capability negotiation 3.2)
    One client connection (``twisted.words``' ``IRCClient``) to the
    configured server, over TLS with certificate verification by default
    (the platform's trust roots or ``tls_ca``; the name checked is ``host``
    or ``tls_hostname``).  Plain TCP only with ``tls = false``, and then no
    server password unless the server is on loopback.  ``CAP LS 302`` is
    sent before ``NICK``/``USER``; of what the server offers the bot asks
    for ``message-tags``, ``server-time`` and ``away-notify``.  A plain
    connection whose server offers an IRCv3 ``sts`` policy (``port=P``) is
    dropped for TLS to that port, and the policy kept in the store (scope
    ``irc.sts``) for later starts.  A nick in use
    gets ``_`` appended (RFC 2812 §3.1.2, 433).  Lost connections are retried
    with a growing delay (``initial_delay`` .. ``max_delay``).

Messages (:mod:`cpimgw_irc.mapping`)
    A private PRIVMSG/NOTICE to the bot becomes a CPIM message from
    ``im:nick@DOMAIN``; a text without an address goes to whoever last
    wrote to that nick through the gateway (kept in the store, scope
    ``irc.reply``).  What the bus refuses is told back to the IRC user in
    a NOTICE (never in answer to a NOTICE, RFC 2812 §3.3.2).
    ``deliver(Message)`` sends the line(s) and a ``PING`` with a token: the
    server answers in order (RFC 2812 §3.7.2), so ``401 ERR_NOSUCHNICK``
    before the ``PONG`` means the nick is not online (``failure``,
    ``recipient-unavailable``); the ``PONG`` alone means the server took the
    message for an online nick (``success``; its reason says when the text
    was split into several IRC messages, and when the nick is away, 301).

Presence (:mod:`cpimgw_irc.mapping`)
    ``deliver(Subscribe)`` for ``pres:nick@DOMAIN`` watches the nick: with
    ``MONITOR`` when the server offers it (IRCv3 monitor, 730/731), and with
    ``USERHOST`` (RFC 2812 §4.8, five nicks a line: online and the away
    flag) every ``poll_interval`` seconds, ``WHOIS`` (311/301/318) for the
    away text.  AWAY (away-notify), QUIT, NICK and JOIN lines of users in
    the bot's ``channels`` update the state at once.  Each change of a
    watched nick is a ``Publish`` on the bus.
    IRC users watch others by writing ``!watch user@domain`` (and
    ``!unwatch``) to the bot; ``deliver(Notify)`` tells them in a NOTICE.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import secrets
from typing import Any, Mapping

import attrs
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.words.protocols import irc
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import (
    Condition, Message, Notify, Response, Subscribe, SubscriptionState, Status, failure, indeterminant, success,
)
from cpimgw.cpim.uri import CPIMURI, PRES, parse_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw_irc import mapping, wire

log = Logger()

#: IRCv3 capabilities the bot asks for when offered.
WANTED_CAPS = ("message-tags", "server-time", "away-notify")
#: RFC 2812 §4.8: USERHOST takes at most five nicknames.
USERHOST_BATCH = 5
#: Numerics that refuse a PRIVMSG/NOTICE to a nick (RFC 2812 §3.3.1, §5.2), and their CPIM condition.
REFUSALS = {
    "401": Condition.UNAVAILABLE,  # ERR_NOSUCHNICK: not online
    "404": Condition.FORBIDDEN,  # ERR_CANNOTSENDTOCHAN
    "407": Condition.BAD_REQUEST,  # ERR_TOOMANYTARGETS
    "411": Condition.BAD_REQUEST,  # ERR_NORECIPIENT
    "412": Condition.BAD_REQUEST,  # ERR_NOTEXTTOSEND
    "486": Condition.FORBIDDEN,  # ERR_NONONREG (the user takes messages from registered nicks only)
    "716": Condition.FORBIDDEN,  # ERR_TARGUMODEG (server-side ignore)
}

DEFAULTS: dict[str, Any] = {
    # Off until an operator names a network: there is no IRC server to attach to by default.
    "enabled": False,
    "domain": "irc.localhost",
    "host": "127.0.0.1",
    "port": 6697,
    "tls": True,
    "tls_ca": "",
    "tls_hostname": "",
    "password": "",
    "nickname": "cpimgw",
    "username": "cpimgw",
    "realname": "cpimgw CPIM gateway",
    "channels": [],
    "fallback_encoding": "latin-1",
    "max_parts": 8,
    "poll_interval": 30.0,
    "delivery_timeout": 15.0,
    "initial_delay": 1.0,
    "max_delay": 60.0,
    "watch_duration": 3600,
}


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class IRCSettings:
    """The validated ``[adapters.irc]`` table."""

    domain: str
    host: str
    port: int
    tls: bool
    tls_ca: str
    tls_hostname: str
    password: str
    nickname: str
    username: str
    realname: str
    channels: tuple[str, ...]
    fallback_encoding: str
    max_parts: int
    poll_interval: float
    delivery_timeout: float
    initial_delay: float
    max_delay: float
    watch_duration: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], name: str = "irc") -> "IRCSettings":
        merged = {**DEFAULTS, **dict(values)}
        merged.pop("enabled", None)

        def need(ok: bool, key: str, reason: str) -> None:
            if not ok:
                raise ConfigError(reason, key=f"adapters.{name}.{key}")

        need(bool(merged["domain"]) and "@" not in merged["domain"], "domain", "must be a domain name")
        need(0 < int(merged["port"]) < 65536, "port", "must be a TCP port (1-65535)")
        need(wire.valid_nick(merged["nickname"]), "nickname", "must be an IRC nickname (RFC 2812 §2.3.1)")
        need(bool(merged["username"]) and " " not in merged["username"], "username", "must be one word")
        need(int(merged["max_parts"]) >= 1, "max_parts", "must be at least 1")
        need(float(merged["poll_interval"]) > 0, "poll_interval", "must be positive")
        need(float(merged["delivery_timeout"]) > 0, "delivery_timeout", "must be positive")
        for channel in merged["channels"]:
            need(isinstance(channel, str) and mapping.is_channel(channel) and " " not in channel and "," not in channel,
                 "channels", f"{channel!r} is not a channel name (RFC 2812 §1.3)")
        try:
            "".encode(merged["fallback_encoding"])
        except LookupError:
            need(False, "fallback_encoding", f"unknown encoding {merged['fallback_encoding']!r}")
        if not merged["tls"] and merged["password"] and not _is_loopback(merged["host"]):
            need(False, "password", "a password is never sent over plain TCP to another host: set tls = true")
        return cls(
            domain=merged["domain"].lower().rstrip("."), host=merged["host"], port=int(merged["port"]),
            tls=bool(merged["tls"]), tls_ca=merged["tls_ca"], tls_hostname=merged["tls_hostname"],
            password=merged["password"], nickname=merged["nickname"], username=merged["username"],
            realname=merged["realname"], channels=tuple(merged["channels"]),
            fallback_encoding=merged["fallback_encoding"], max_parts=int(merged["max_parts"]),
            poll_interval=float(merged["poll_interval"]), delivery_timeout=float(merged["delivery_timeout"]),
            initial_delay=float(merged["initial_delay"]), max_delay=float(merged["max_delay"]),
            watch_duration=int(merged["watch_duration"]),
        )


class BotProtocol(irc.IRCClient):
    """The bot's connection: ``IRCClient`` for registration, PING, ISUPPORT and nick collisions; every
    line is parsed first by :func:`cpimgw_irc.wire.parse_line` (IRCv3 tags, charset fallback) and what
    the adapter bridges goes to it."""

    adapter: "IRCAdapter"
    heartbeatInterval = 60

    def connectionMade(self) -> None:  # noqa: N802 (Twisted name)
        settings = self.adapter.settings
        self.nickname = settings.nickname
        self.username = settings.username
        self.realname = settings.realname
        self.password = settings.password or None
        self.caps: set[str] = set()
        self._cap_done = False
        self.sendLine("CAP LS 302")
        self.performLogin = 0
        super().connectionMade()
        self.register(self.nickname, hostname="0", servername="*")  # RFC 2812 §3.1.3: USER user mode unused :name

    def _createHeartbeat(self) -> LoopingCall:  # noqa: N802 (Twisted name)
        heartbeat = LoopingCall(self._sendHeartbeat)
        heartbeat.clock = self.adapter.reactor
        return heartbeat

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted name)
        super().connectionLost(reason)
        self.adapter.lost(self)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted name)
        try:
            parsed = wire.parse_line(line, fallback=self.adapter.settings.fallback_encoding)
        except wire.IRCParseError as error:
            self.adapter.counters["bad_lines"] += 1
            log.warn("IRC: unparseable line from the server: {reason}", reason=error.reason)
            return
        if self.adapter.handle(self, parsed):
            return
        command = irc.numeric_to_symbolic.get(parsed.command, parsed.command)
        self.handleCommand(command, parsed.prefix or "", list(parsed.params))

    # -- IRCv3 capability negotiation -------------------------------------------------------------

    def irc_CAP(self, prefix: str, params: list[str]) -> None:  # noqa: N802 (Twisted name)
        if len(params) < 3:
            return
        sub = params[1].upper()
        if sub == "LS":
            values = dict(item.partition("=")[::2] for item in params[-1].split())
            self.offered = getattr(self, "offered", set()) | set(values)
            if "sts" in values:
                self.sts = values["sts"]
            if params[2] == "*":  # more LS lines follow (CAP 302 multiline)
                return
            if getattr(self, "sts", None) is not None and self.adapter.strict_transport(self, self.sts):
                return  # IRCv3 sts: this plain connection is dropped for a TLS one
            wanted = [cap for cap in WANTED_CAPS if cap in self.offered]
            if wanted:
                self.sendLine("CAP REQ :" + " ".join(wanted))
            else:
                self._end_cap()
        elif sub == "ACK":
            self.caps |= {item.lstrip("-~=") for item in params[-1].split()}
            self._end_cap()
        elif sub == "NAK":
            self._end_cap()

    def _end_cap(self) -> None:
        if not self._cap_done:
            self._cap_done = True
            self.sendLine("CAP END")

    def irc_ERR_UNKNOWNCOMMAND(self, prefix: str, params: list[str]) -> None:  # noqa: N802 (Twisted name)
        if len(params) > 1 and params[1].upper() == "CAP":
            self._cap_done = True  # an RFC 1459 server without CAP: registration goes on
        else:
            log.info("IRC: the server does not know {command}", command=params[1] if len(params) > 1 else "?")

    def signedOn(self) -> None:  # noqa: N802 (Twisted name)
        self.adapter.signed_on(self)

    def send(self, line: wire.IRCLine) -> None:
        """Write one line as it is (``IRCClient.sendLine`` would apply CTCP low-level quoting to the text)."""
        self.transport.write(line.to_bytes())

    def privmsg(self, user: str, channel: str, message: str) -> None:
        """Channel chatter the bot sees in its channels is not bridged (RFC 3860 has no groups)."""

    def noticed(self, user: str, channel: str, message: str) -> None:
        """Server and channel notices are not bridged."""


class _BotFactory(Factory):
    protocol = BotProtocol

    def __init__(self, adapter: "IRCAdapter") -> None:
        self.adapter = adapter

    def buildProtocol(self, addr: Any) -> BotProtocol:  # noqa: N802 (Twisted name)
        protocol = BotProtocol()
        protocol.adapter = self.adapter
        protocol.factory = self
        return protocol


@attrs.define
class _Pending:
    nick: str
    deferred: defer.Deferred
    parts: int
    away: str | None = None


@implementer(IAdapter, IMessaging, IPresence)
class IRCAdapter(MultiService):
    """The IRC network ``settings.domain`` on the bus, through one bot connection."""

    def __init__(self, name: str, bus: Any, settings: IRCSettings, *, endpoint: Any = None) -> None:
        super().__init__()
        self.name: str = name  # type: ignore[assignment]  # Service.name is None until set
        self.bus = bus
        self.reactor = bus.reactor
        self.settings = settings
        self.domains = (settings.domain,)
        self.network = mapping.Network(settings.domain, settings.nickname)
        self.counters: collections.Counter[str] = collections.Counter()
        self.protocol: BotProtocol | None = None
        self.ready: defer.Deferred = defer.Deferred()
        self._pending: dict[str, _Pending] = {}
        self._tokens = itertools.count(1)
        self.watched: dict[str, set[str]] = {}
        self.states: dict[str, mapping.NickState] = {}
        self._userhost_asked: collections.deque[tuple[str, ...]] = collections.deque()
        self._whois_wanted: set[str] = set()
        self._whois_away: dict[str, str] = {}
        self.last_peer: dict[str, CPIMURI] = {}
        self.irc_watches: dict[tuple[str, str], str] = {}
        self._endpoint = endpoint
        self._poll = LoopingCall(self.poll)
        self._poll.clock = self.reactor
        self._client: ClientService | None = None
        #: The TLS port an IRCv3 sts policy (or a stored one) upgrades a plain connection to.
        self.sts_port: int | None = None

    def __repr__(self) -> str:
        return f"<IRCAdapter {self.name} {self.settings.host}:{self.settings.port} {self.settings.domain}>"

    # -- service ----------------------------------------------------------------------------------

    def endpoint(self) -> Any:
        if self._endpoint is not None:
            return self._endpoint
        settings = self.settings
        port = self.sts_port or settings.port
        endpoint = HostnameEndpoint(self.reactor, settings.host, port, timeout=30)
        if not self.secure:
            return endpoint
        if settings.tls_ca:
            with open(settings.tls_ca, "rb") as handle:
                trust = ssl.Certificate.loadPEM(handle.read())
        else:
            trust = ssl.platformTrust()
        options = ssl.optionsForClientTLS(settings.tls_hostname or settings.host, trustRoot=trust)
        return wrapClientTLS(options, endpoint)

    @property
    def secure(self) -> bool:
        """Whether the bot connects over TLS (configured, or upgraded by an IRCv3 sts policy)."""
        return self.settings.tls or self.sts_port is not None

    def _new_client(self) -> None:
        self._client = ClientService(self.endpoint(), _BotFactory(self), clock=self.reactor,
                                     retryPolicy=backoffPolicy(self.settings.initial_delay, self.settings.max_delay))
        self._client.setServiceParent(self)

    def startService(self) -> None:  # noqa: N802 (Twisted name)
        store = getattr(self.bus, "store", None)
        if not self.settings.tls and store is not None and hasattr(store, "get_value"):
            # A stored IRCv3 sts policy for this host still in force: TLS from the first connection.
            stored = store.get_value("irc.sts", self.settings.host)
            stored.addCallback(lambda value: setattr(self, "sts_port", int(value)) if value else None)
            stored.addErrback(lambda reason: log.failure("IRC: could not read the sts policy", reason))
        self._new_client()
        super().startService()
        log.info("IRC adapter {name}: {domain} through {host}:{port} ({tls})", name=self.name,
                 domain=self.settings.domain, host=self.settings.host, port=self.settings.port,
                 tls="TLS, certificate verified" if self.settings.tls else "plain TCP unless the server offers sts")
        if store is not None and hasattr(store, "get_values"):
            loaded = store.get_values("irc.reply")
            loaded.addCallback(self._load_peers)
            loaded.addErrback(lambda reason: log.failure("IRC: could not read the reply addresses", reason))

    def strict_transport(self, protocol: BotProtocol, value: str) -> bool:
        """An IRCv3 ``sts`` policy offered (``port=P`` on a plain connection, ``duration=D`` on TLS).

        On a plain connection with a port: drop it and connect over TLS (certificate verified) to that
        port, now and after restarts (``True``).  On TLS with a duration: keep the policy that long.
        """
        fields = dict(item.partition("=")[::2] for item in value.split(","))
        store = getattr(self.bus, "store", None)
        if not self.secure:
            port = fields.get("port", "")
            if not port.isdigit() or not 0 < int(port) < 65536:
                log.warn("IRC: ignoring an sts policy without a usable port: {value}", value=value)
                return False
            log.info("IRC: the server offers TLS on port {port} (IRCv3 sts): reconnecting over TLS", port=port)
            self.sts_port = int(port)
            if store is not None and hasattr(store, "put_value"):
                store.put_value("irc.sts", self.settings.host, port.encode())
            old, self._client = self._client, None
            if old is not None:
                old.disownServiceParent()
                old.stopService()
            else:
                protocol.transport.loseConnection()
            if self.running:
                self._new_client()
            return True
        duration = fields.get("duration", "")
        if self.sts_port is not None and duration.isdigit() and store is not None and hasattr(store, "put_value"):
            expires = self.reactor.seconds() + int(duration) if int(duration) else self.reactor.seconds()
            store.put_value("irc.sts", self.settings.host, str(self.sts_port).encode(), expires_at=expires)
        return False

    def stopService(self) -> defer.Deferred:  # noqa: N802 (Twisted name)
        if self._poll.running:
            self._poll.stop()
        if self.protocol is not None:
            try:
                self.protocol.quit("cpimgw stopping")
            except Exception:  # noqa: BLE001 - the transport may be gone already
                pass
        for pending in list(self._pending.values()):
            if not pending.deferred.called:
                pending.deferred.callback(None)
        return defer.maybeDeferred(super().stopService)

    def _load_peers(self, values: Mapping[str, bytes]) -> None:
        for key, value in values.items():
            try:
                self.last_peer.setdefault(key, parse_uri(value.decode("utf-8")))
            except (UnicodeDecodeError, ValueError):
                log.warn("IRC: unreadable reply address of {nick} in the store", nick=key)

    def signed_on(self, protocol: BotProtocol) -> None:
        self.protocol = protocol
        self.network = mapping.Network(self.settings.domain, protocol.nickname,
                                       protocol.supported.getFeature("CASEMAPPING", ["rfc1459"])[0]
                                       if isinstance(protocol.supported.getFeature("CASEMAPPING"), (list, tuple))
                                       else (protocol.supported.getFeature("CASEMAPPING") or "rfc1459"))
        log.info("IRC adapter {name} signed on as {nick} (capabilities: {caps})", name=self.name,
                 nick=protocol.nickname, caps=" ".join(sorted(protocol.caps)) or "none")
        for channel in self.settings.channels:
            protocol.join(channel)
        if self.watched and self.monitor_supported:
            protocol.sendLine("MONITOR + " + ",".join(sorted(self.watched)))
        if self._poll.running:
            self._poll.stop()
        self._poll.start(self.settings.poll_interval, now=True)
        if not self.ready.called:
            self.ready.callback(protocol)

    def lost(self, protocol: BotProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
            self.ready = defer.Deferred()
            if self._poll.running:
                self._poll.stop()
        for token, pending in list(self._pending.items()):
            del self._pending[token]
            if not pending.deferred.called:
                pending.deferred.callback(indeterminant_reason("the IRC connection was lost before the server "
                                                               "answered"))
        self._userhost_asked.clear()

    @property
    def monitor_supported(self) -> bool:
        return self.protocol is not None and self.protocol.supported.hasFeature("MONITOR")

    # -- lines from the server --------------------------------------------------------------------

    def handle(self, protocol: BotProtocol, line: wire.IRCLine) -> bool:
        """Take the lines the adapter bridges; ``False`` leaves the line to ``IRCClient``."""
        command = line.command
        if command in ("PRIVMSG", "NOTICE") and line.params and not mapping.is_channel(line.params[0]) \
                and line.nick is not None and self.network.is_bot(line.params[0]):
            request = wire.ctcp_parse(line.params[-1])
            if request is not None and request[0] != "ACTION":
                return False  # VERSION, PING...: IRCClient answers CTCP queries
            self.on_private(protocol, line)
            return True
        if command == "PONG" and line.params:
            self._on_pong(line.params[-1])
            return True
        if command in REFUSALS and len(line.params) >= 2:
            self._on_refusal(command, line.params[1], line.params[-1])
            return True
        if command == "301" and len(line.params) >= 3:  # RPL_AWAY
            self._on_away_reply(line.params[1], line.params[2])
            return True
        if command == "318" and len(line.params) >= 2:  # RPL_ENDOFWHOIS
            self._on_end_of_whois(line.params[1])
            return False
        if command == "302":  # RPL_USERHOST
            self._on_userhost(line.params[-1] if len(line.params) > 1 else "")
            return True
        if command in ("730", "731", "AWAY", "QUIT", "JOIN", "NICK"):
            self._on_presence_line(line)
            return command in ("730", "731", "AWAY")
        return False

    def on_private(self, protocol: BotProtocol, line: wire.IRCLine) -> None:
        nick = line.nick or ""
        key = self.network.lower(nick)
        text = line.params[-1]
        if line.command == "PRIVMSG" and text.startswith("!"):
            self._bot_command(protocol, nick, text)
            return
        try:
            message = mapping.message_from_line(line, self.network, default_destination=self.last_peer.get(key),
                                                now=self._now(), origin=self.name)
        except mapping.IRCMappingError as error:
            self.counters["refused"] += 1
            log.info("IRC: {nick}'s message not bridged: {reason}", nick=nick, reason=error.reason)
            if line.command == "PRIVMSG":
                protocol.notice(nick, f"not delivered: {error.reason}")
            return
        self._remember_peer(key, message.destination)
        self.counters["received"] += 1
        result = self.bus.dispatch(message)

        def answered(response: Response) -> None:
            if response.status is Status.FAILURE and line.command == "PRIVMSG" and self.protocol is not None:
                self.protocol.notice(nick, f"not delivered to {message.destination.address}: "
                                           f"{response.reason or response.condition}")

        result.addCallback(answered)
        result.addErrback(lambda reason: log.failure("IRC: dispatch failed", reason))

    def _now(self) -> Any:
        import datetime

        return datetime.datetime.fromtimestamp(self.reactor.seconds(), datetime.timezone.utc)

    def _remember_peer(self, key: str, peer: CPIMURI) -> None:
        if self.last_peer.get(key) == peer:
            return
        self.last_peer[key] = peer
        store = getattr(self.bus, "store", None)
        if store is not None and hasattr(store, "put_value"):
            stored = store.put_value("irc.reply", key, str(peer).encode())
            stored.addErrback(lambda reason: log.failure("IRC: could not store the reply address", reason))

    def _bot_command(self, protocol: BotProtocol, nick: str, text: str) -> None:
        word, _, rest = text[1:].partition(" ")
        word = word.lower()
        if word in ("watch", "unwatch") and rest.strip():
            for target in rest.split():
                try:
                    uri = mapping.parse_address(target).as_pres()
                except mapping.IRCMappingError as error:
                    protocol.notice(nick, error.reason)
                    continue
                self._irc_watch(nick, uri, word == "watch")
            return
        protocol.notice(nick, "write 'user@domain: text' to send a message (a text without an address goes to "
                              "whoever wrote to you last); '!watch user@domain' / '!unwatch user@domain' for presence")

    def _irc_watch(self, nick: str, target: CPIMURI, on: bool) -> None:
        key = (self.network.lower(nick), str(target))
        subscript_id = self.irc_watches.get(key)
        if not on and subscript_id is None:
            self.protocol and self.protocol.notice(nick, f"you do not watch {target.address}")
            return
        if on and subscript_id is None:
            subscript_id = secrets.token_hex(16)
            self.irc_watches[key] = subscript_id
        if not on:
            del self.irc_watches[key]
        operation = Subscribe(self.network.uri(nick, PRES), target, self.settings.watch_duration if on else 0,
                              subscript_id=subscript_id, origin=self.name)

        def answered(response: Response) -> None:
            if response.status is Status.FAILURE:
                self.irc_watches.pop(key, None)
                if self.protocol is not None:
                    self.protocol.notice(nick, f"cannot watch {target.address}: {response.reason}")

        self.bus.dispatch(operation).addCallback(answered)

    # -- deliver ----------------------------------------------------------------------------------

    def deliver(self, operation: Any) -> defer.Deferred:
        try:
            if isinstance(operation, Message):
                return self._deliver_message(operation)
            if isinstance(operation, Subscribe):
                return defer.succeed(self._deliver_subscribe(operation))
            if isinstance(operation, Notify):
                return defer.succeed(self._deliver_notify(operation))
        except mapping.IRCMappingError as error:
            return defer.succeed(failure(operation, error.condition, error.reason))
        return defer.succeed(failure(operation, Condition.UNSUPPORTED,
                                     f"IRC takes no {type(operation).__name__.lower()}"))

    def _deliver_message(self, message: Message) -> defer.Deferred:
        protocol = self.protocol
        if protocol is None:
            return defer.succeed(failure(message, Condition.SERVICE_UNAVAILABLE,
                                         f"not connected to the IRC network {self.settings.domain}"))
        nick = self.network.nick_of(message.destination)
        self._remember_peer(self.network.lower(nick), message.source)
        lines = mapping.lines_for_message(message, self.network,
                                          prefix_length=mapping.own_prefix_length(self.network, self.settings.username))
        if len(lines) > self.settings.max_parts:
            return defer.succeed(failure(
                message, Condition.TOO_LARGE,
                f"the text needs {len(lines)} IRC messages of at most {wire.MAX_LINE} octets (RFC 2812 §2.3); "
                f"this gateway sends at most {self.settings.max_parts}"))
        if len(lines) > 1:
            log.info("IRC: the message to {nick} is split into {parts} IRC messages (RFC 2812 §2.3: {limit} octets "
                     "a line, one line per line of text)", nick=nick, parts=len(lines), limit=wire.MAX_LINE)
        for line in lines:
            protocol.send(line)
        token = f"cpimgw-{next(self._tokens)}"
        deferred: defer.Deferred = defer.Deferred()
        self._pending[token] = _Pending(self.network.lower(nick), deferred, len(lines))
        protocol.sendLine(f"PING :{token}")
        self.counters["sent"] += 1

        def timed_out(result: Any, timeout: float) -> Any:
            self._pending.pop(token, None)
            return indeterminant_reason(f"the IRC server did not answer within {timeout:g} s")

        deferred.addTimeout(self.settings.delivery_timeout, self.reactor, onTimeoutCancel=timed_out)

        def respond(result: Any) -> Response:
            if isinstance(result, Response):
                return result
            if isinstance(result, _Outcome):
                if result.condition is None:
                    return success(message, result.reason)
                if result.condition is _INDETERMINANT:
                    return indeterminant(message, result.reason)
                return failure(message, result.condition, result.reason, result.native_code)
            return indeterminant(message, "the gateway is stopping")

        deferred.addCallback(respond)
        return deferred

    def _on_pong(self, token: str) -> None:
        pending = self._pending.pop(token, None)
        if pending is None or pending.deferred.called:
            return
        reason = "accepted by the IRC server for an online nick"
        if pending.parts > 1:
            reason += (f"; split into {pending.parts} IRC messages (RFC 2812 §2.3: {wire.MAX_LINE} octets a line, "
                       "one line per line of text)")
        if pending.away is not None:
            reason += f"; {pending.nick} is away: {pending.away}"
        pending.deferred.callback(_Outcome(None, reason))

    def _on_refusal(self, numeric: str, target: str, text: str) -> None:
        key = self.network.lower(target)
        for token, pending in list(self._pending.items()):
            if pending.nick == key and not pending.deferred.called:
                del self._pending[token]
                condition = REFUSALS[numeric]
                native = 480 if condition is Condition.UNAVAILABLE else None
                pending.deferred.callback(_Outcome(condition, f"IRC {numeric} {target}: {text}", native))
        if numeric == "401":
            self._set_state(key, mapping.NickState(False))

    def _on_away_reply(self, nick: str, text: str) -> None:
        key = self.network.lower(nick)
        for pending in self._pending.values():
            if pending.nick == key:
                pending.away = text
        if key in self._whois_wanted:
            self._whois_away[key] = text
        elif key in self.watched:
            self._set_state(key, mapping.NickState(True, text or "away"))

    def _on_end_of_whois(self, nick: str) -> None:
        key = self.network.lower(nick)
        if key in self._whois_wanted:
            self._whois_wanted.discard(key)
            text = self._whois_away.pop(key, None)
            self._set_state(key, mapping.NickState(True, text or "away"))

    # -- presence ---------------------------------------------------------------------------------

    def _deliver_subscribe(self, op: Subscribe) -> Response:
        nick = self.network.nick_of(op.target)
        key = self.network.lower(nick)
        if op.duration == 0:
            ids = self.watched.get(key, set())
            ids.discard(op.subscript_id)
            if not ids:
                self.watched.pop(key, None)
                if self.protocol is not None and self.monitor_supported:
                    self.protocol.sendLine(f"MONITOR - {nick}")
            return success(op, "no longer watched")
        fresh = key not in self.watched
        self.watched.setdefault(key, set()).add(op.subscript_id)
        if self.protocol is not None and fresh:
            if self.monitor_supported:
                self.protocol.sendLine(f"MONITOR + {nick}")
            self._ask_userhost((key,))
        elif key in self.states:
            # Known already: publish again after the response (the presence service notifies the new watcher).
            self.reactor.callLater(0, self._publish, key, self.states[key])
        return success(op, "watched with " + ("MONITOR and USERHOST" if self.monitor_supported else "USERHOST"),
                       duration=op.duration)

    def _deliver_notify(self, op: Notify) -> Response:
        nick = self.network.nick_of(op.watcher)
        if self.protocol is None:
            return failure(op, Condition.SERVICE_UNAVAILABLE, f"not connected to the IRC network {self.settings.domain}")
        if op.presence is None:
            text = (f"you no longer watch {op.target.address}" if op.state is SubscriptionState.TERMINATED
                    else f"waiting for {op.target.address} to let you watch")
        else:
            text = mapping.presence_text(op.target, mapping.state_from_document(mapping.document_of(op)))
            if op.state is SubscriptionState.TERMINATED:
                text += " (no longer watched)"
        if op.state is SubscriptionState.TERMINATED:
            self.irc_watches.pop((self.network.lower(nick), str(op.target.as_pres())), None)
        self.protocol.notice(nick, text)
        return success(op)

    def poll(self) -> None:
        """Ask USERHOST for every watched nick (five a line, RFC 2812 §4.8)."""
        if self.protocol is None or not self.watched:
            return
        nicks = sorted(self.watched)
        for start in range(0, len(nicks), USERHOST_BATCH):
            self._ask_userhost(tuple(nicks[start:start + USERHOST_BATCH]))

    def _ask_userhost(self, nicks: tuple[str, ...]) -> None:
        if self.protocol is None:
            return
        self._userhost_asked.append(nicks)
        self.protocol.sendLine("USERHOST " + " ".join(nicks))

    def _on_userhost(self, text: str) -> None:
        asked = self._userhost_asked.popleft() if self._userhost_asked else ()
        seen = set()
        for reply in text.split():
            name, equals, rest = reply.partition("=")
            if not equals:
                continue
            nick = self.network.lower(name.rstrip("*"))
            seen.add(nick)
            away = rest.startswith("-")
            old = self.states.get(nick)
            if away:
                if old is None or not old.online or old.away is None:
                    self._whois(nick)
            else:
                self._set_state(nick, mapping.NickState(True))
        for nick in asked:
            if nick not in seen:
                old = self.states.get(nick)
                self._set_state(nick, mapping.NickState(False, None, old.note if old and not old.online else None))

    def _whois(self, nick: str) -> None:
        if self.protocol is None or nick in self._whois_wanted:
            return
        self._whois_wanted.add(nick)
        self.protocol.sendLine(f"WHOIS {nick}")

    def _on_presence_line(self, line: wire.IRCLine) -> None:
        try:
            presentity, state = mapping.presence_from_line(line, self.network)
        except mapping.IRCMappingError:
            return
        key = presentity.user
        if line.command == "730" and key in self.watched:
            self._ask_userhost((key,))  # online: is the nick away?
        self._set_state(key, state)
        if line.command == "NICK" and line.params:
            new = self.network.lower(line.params[0])
            if key in self.last_peer:
                self._remember_peer(new, self.last_peer.pop(key))
            self._set_state(new, mapping.NickState(True))

    def _set_state(self, key: str, state: mapping.NickState) -> None:
        old = self.states.get(key)
        self.states[key] = state
        if state != old and key in self.watched:
            self._publish(key, state)

    def _publish(self, key: str, state: mapping.NickState) -> None:
        operation = mapping.publish_for(self.network.uri(key, PRES), state, origin=self.name)
        self.counters["published"] += 1
        log.info("IRC presence of {nick}: {state}", nick=key, state=mapping.presence_text(operation.presentity, state))
        self.bus.dispatch(operation).addErrback(lambda reason: log.failure("IRC: publish failed", reason))


_INDETERMINANT = object()


@attrs.frozen
class _Outcome:
    condition: Any
    reason: str
    native_code: int | None = None


def indeterminant_reason(reason: str) -> _Outcome:
    return _Outcome(_INDETERMINANT, reason)


def build(settings: Mapping[str, Any], bus: Any, name: str = "irc") -> IRCAdapter:
    """``IAdapterFactory.build``: the adapter from its ``[adapters.irc]`` table."""
    return IRCAdapter(name, bus, IRCSettings.from_mapping(settings, name))
