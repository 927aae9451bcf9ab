"""The three networks of the end-to-end tests, started for each test, and their users.

:class:`ThreeNetworksTestCase` starts, for every test: Prosody
(``xmpp.localhost``, users alice and juliet), Kamailio (``sip.localhost``:
registrar and presence server), and one gateway process by ``twistd`` with
``conf/three-networks.toml`` (ports replaced); then logs in alice (slixmpp)
and carol (the cpimgw PRIM client, ``prim.localhost``).  SIP users are sipp
processes started by the helpers (:meth:`sip_receiver`, :meth:`sip_send`,
:meth:`sip_publish`, :meth:`sip_watch`).  Everything is stopped again in
the test's cleanups, the gateway by SIGTERM (and it must exit 0).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim.client import PrimClient
from tests.e2e import sip_users
from tests.e2e.peers import (
    PRIM_USERS, Gateway, Kamailio, Prosody, free_port, free_udp_port, gateway_config, run_sipp, wait_until,
)
from tests.interop import require_program
from tests.interop.prosody import SlixClient

WAIT = 15.0  # seconds: the bound of every wait for something to arrive
XMPP_USERS = {"alice": "alicepw", "juliet": "julietpw"}


def record_all_messages(client: SlixClient) -> None:
    """Keep every ``<message/>`` stanza ``client`` receives, as XML text, in ``client.stanzas``.

    slixmpp's ``message`` event only fires for stanzas with a ``<body/>``; a
    message whose content has no text form (a signed object) has none.
    """
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    client.stanzas = []

    def keep(stanza: Any) -> None:
        client.stanzas.append(str(stanza))

    client.call(client.client.register_handler,
                Callback("cpimgw e2e: every message", MatchXPath("{jabber:client}message"), keep))


class ThreeNetworksTestCase(TestCase):
    """Prosody + Kamailio + one twistd gateway; alice on XMPP and carol on PRIM logged in."""

    timeout = 120

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        yield self.start_peers()
        self.gateway = yield self.start_gateway("gw")
        self.alice = yield self.xmpp_user("alice")
        self.carol = yield self.prim_user("carol")

    @inlineCallbacks
    def start_peers(self):  # type: ignore[no-untyped-def]
        """The work directory, Prosody with the XMPP users, and Kamailio; each stopped in cleanup."""
        require_program("sipp")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self._runs = itertools.count(1)
        self.prosody = Prosody()
        for user, password in XMPP_USERS.items():
            self.prosody.register(user, password)
        yield self.prosody.start()
        self.addCleanup(self.prosody.stop)
        kamailio_dir = os.path.join(self.dir, "kamailio")
        os.makedirs(kamailio_dir)
        self.kamailio = Kamailio(kamailio_dir)
        self.addCleanup(self.kamailio.stop)
        yield self.kamailio.started()

    def gateway_ports(self) -> dict[str, int]:
        return {"sip_port": free_udp_port(), "prim_s2s_port": free_port(), "prim_c2s_port": free_port()}

    @inlineCallbacks
    def start_gateway(self, name: str, config: str | None = None, ready_xmpp: bool = True):  # type: ignore[no-untyped-def]
        """Start one gateway on ``config`` (default: conf/three-networks.toml on free ports)."""
        if config is None:
            self.ports = self.gateway_ports()
            config = gateway_config(xmpp_component_port=self.prosody.component_port,
                                    kamailio_port=self.kamailio.port, **self.ports)
        gateway = Gateway(os.path.join(self.dir, name), config)
        self.addCleanup(self._stop_gateway, gateway)
        yield gateway.start(ready=[r"XMPP component \S+ authenticated"] if ready_xmpp else [])
        return gateway

    @inlineCallbacks
    def _stop_gateway(self, gateway: Gateway):  # type: ignore[no-untyped-def]
        code = yield gateway.stop()
        if code not in (0, None):
            raise AssertionError(f"the gateway exited with status {code} on SIGTERM:\n{gateway.log()[-3000:]}")

    @inlineCallbacks
    def xmpp_user(self, name: str, resource: str = "desk"):  # type: ignore[no-untyped-def]
        client = SlixClient(f"{name}@xmpp.localhost/{resource}", XMPP_USERS[name], self.prosody.c2s_port)
        self.addCleanup(client.stop)
        record_all_messages(client)
        yield wait_until(client.session_started.is_set, WAIT, what=f"{name}'s XMPP session")
        return client

    @inlineCallbacks
    def prim_user(self, name: str, port: int | None = None):  # type: ignore[no-untyped-def]
        client = PrimClient(reactor, f"{name}@prim.localhost", PRIM_USERS[name])
        yield client.connect("127.0.0.1", port or self.ports["prim_c2s_port"]).addTimeout(WAIT, reactor)
        self.addCleanup(client.logout)
        yield client.listen().addTimeout(WAIT, reactor)
        return client

    # -- SIP users (sipp) -------------------------------------------------------------------------------------

    def sipp_dir(self, what: str) -> str:
        return os.path.join(self.dir, f"sipp-{next(self._runs)}-{what}")

    def sipp(self, scenario: str, args: list[str], what: str, timeout: float = 30.0) -> tuple[Any, str]:
        workdir = self.sipp_dir(what)
        process = run_sipp(scenario, ["-i", "127.0.0.1", "-nostdin", *args], workdir, timeout=timeout)
        self.addCleanup(process.stop)
        return process, workdir

    @inlineCallbacks
    def sipp_ok(self, scenario: str, remote: str, what: str, extra: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        """Run a one-call UAC scenario towards ``remote`` (host:port) to its end; fail unless sipp exits 0."""
        process, workdir = self.sipp(scenario, [remote, "-p", str(free_udp_port()), "-m", "1", "-t", "u1",
                                                "-timeout", "20s", "-timeout_error", *extra], what)
        code, output = yield process.ended
        self.assertEqual(code, 0, f"sipp {what} failed:\n{output[-3000:]}\n{self.gateway.log()[-3000:]}")
        return workdir

    @property
    def gateway_sip(self) -> str:
        return f"127.0.0.1:{self.ports['sip_port']}"

    @property
    def kamailio_sip(self) -> str:
        return f"127.0.0.1:{self.kamailio.port}"

    @inlineCallbacks
    def sip_receiver(self, user: str = "bob", count: int = 1):  # type: ignore[no-untyped-def]
        """A SIP user of sip.localhost that answers ``count`` MESSAGEs: a sipp UAS registered at Kamailio.

        Fires with (sipp process, its directory) once the registration is in.
        """
        port = free_udp_port()
        process, workdir = self.sipp(sip_users.message_uas(), ["-p", str(port), "-m", str(count), "-t", "u1"],
                                     f"{user}-uas")
        yield self.sipp_ok(sip_users.register_uac(f"{user}@sip.localhost", port), self.kamailio_sip,
                           f"{user}-register")
        return process, workdir

    def sip_send(self, sender: str, recipient: str, body: str, content_type: str = "text/plain; charset=utf-8",
                 **kw: Any) -> Deferred:
        """``sender`` (user@sip.localhost) sends a MESSAGE to ``recipient`` through the gateway."""
        return self.sipp_ok(sip_users.message_uac(sender, recipient, body, content_type, **kw), self.gateway_sip,
                            f"message-{sender.split('@')[0]}")

    def sip_publish(self, user: str, basic: str, note: str, tuple_id: str = "t1") -> Deferred:
        """``user`` (user@sip.localhost) publishes her presence at Kamailio (a new publication, tuple ``tuple_id``)."""
        return self.sipp_ok(sip_users.publish_uac(user, basic, note, tuple_id=tuple_id), self.kamailio_sip,
                            f"publish-{user.split('@')[0]}")

    def sip_watch(self, watcher: str, target: str) -> tuple[Any, str]:
        """``watcher`` (user@sip.localhost) subscribes through the gateway to ``target``'s presence.

        Returns (sipp process, its directory); sipp answers NOTIFYs (traced
        in its directory) until it is stopped or 40 s have passed.
        """
        return self.sipp(sip_users.subscribe_uac(watcher, target),
                         [self.gateway_sip, "-p", str(free_udp_port()), "-m", "1", "-t", "u1", "-timeout", "40s"],
                         f"watch-{watcher.split('@')[0]}", timeout=45.0)
