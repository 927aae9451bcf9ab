"""The XEP-0114 external component connection of the XMPP adapter.

:class:`ComponentConnection` is a ``tx_xmpp`` stream manager and a Twisted
service: it connects to the XMPP server's component port, authenticates with
the XEP-0114 handshake, and reconnects with exponential backoff (Twisted's
``ReconnectingClientFactory``: ``initial_delay``, doubling up to
``max_delay``) whenever the server goes away.  Every stream it opens is a
:class:`~cpimgw.adapters.xmpp.hardening.HardenedXmlStream` (restricted XML,
stanza cap, rate limit, ``TCP_NODELAY``).

Unlike ``StreamManager.send``, :meth:`ComponentConnection.send` never queues
while the server is away: it raises :class:`NotConnected`, so the adapter
answers the bus with a failure instead of keeping stanzas nobody will see.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application import service
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.xish import domish
from tx_xmpp.subprotocols import StreamManager

from cpimgw import metrics
from cpimgw.adapters.xmpp.hardening import StreamLimits, StreamStats, harden_factory

log = Logger()

NS_COMPONENT_ACCEPT = "jabber:component:accept"


class NotConnected(Exception):
    """The XMPP server is not connected; nothing was sent."""


class ComponentConnection(StreamManager, service.Service):
    """An external component (XEP-0114) that keeps itself connected.

    :param reactor: provides ``IReactorTCP`` and ``IReactorTime``.
    :param host: the server's component host (``127.0.0.1``).
    :param port: its component port.
    :param domain: the component's JID (the gateway domain).
    :param secret: the shared component secret.
    :param on_state: called with ``True`` when the stream is authenticated,
        ``False`` when it is lost.
    """

    namespace = NS_COMPONENT_ACCEPT

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        domain: str,
        secret: str,
        *,
        limits: StreamLimits = StreamLimits(),
        stats: StreamStats | None = None,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.domain = domain
        factory = jabber_component.componentFactory(domain, secret)
        harden_factory(factory, limits, stats, clock=reactor)
        factory.initialDelay = initial_delay
        factory.maxDelay = max_delay
        factory.delay = initial_delay
        self.on_state = on_state
        self._connector: Any = None
        StreamManager.__init__(self, factory, reactor)

    @property
    def connected(self) -> bool:
        """Whether the component stream is up and authenticated."""
        return bool(self._initialized and self.xmlstream is not None)

    def _connected(self, xs: Any) -> None:
        log.info("XMPP component connected to {host}:{port}", host=self.host, port=self.port)
        StreamManager._connected(self, xs)

    def _authd(self, xs: Any) -> None:
        old_send = xs.send

        def send(obj: Any) -> None:
            if domish.IElement.providedBy(obj) and not obj.getAttribute("from"):
                obj["from"] = self.domain
            old_send(obj)

        xs.send = send
        log.info("XMPP component {domain} authenticated", domain=self.domain)
        StreamManager._authd(self, xs)
        if self.on_state is not None:
            self.on_state(True)

    def _disconnected(self, reason: Failure) -> None:
        was_up = self._initialized
        StreamManager._disconnected(self, reason)
        if self.running:
            log.warn(
                "XMPP component stream to {host}:{port} lost ({why}); reconnecting with backoff",
                host=self.host,
                port=self.port,
                why=reason.getErrorMessage() if reason is not None else "closed",
            )
        if was_up and self.on_state is not None:
            self.on_state(False)

    def initializationFailed(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        metrics.auth_failure("xmpp", "component")
        log.error(
            "XMPP component handshake as {domain} failed: {why}",
            domain=self.domain,
            why=reason.getErrorMessage(),
        )
        if self.xmlstream is not None and self.xmlstream.transport is not None:
            self.xmlstream.transport.loseConnection()

    def send(self, obj: Any) -> None:
        """Send a stanza now, or raise :class:`NotConnected` (never queue)."""
        if not self.connected:
            raise NotConnected(f"the XMPP server {self.host}:{self.port} is not connected")
        self.xmlstream.send(obj)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        service.Service.startService(self)
        self.factory.continueTrying = True
        self._connector = self.reactor.connectTCP(self.host, self.port, self.factory)

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        service.Service.stopService(self)
        self.factory.stopTrying()
        if self._connector is not None:
            self._connector.disconnect()
