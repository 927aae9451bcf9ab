"""Two gateways, no loops, no duplicates (RFC 3860 §4.1 MaxForwards; duplicate suppression).

Two cpimgw processes, each started by ``twistd`` with its own configuration
generated from ``conf/three-networks.toml``:

- gateway A serves XMPP (the Prosody of ``xmpp.localhost``) and PRIM domain
  ``a.prim.localhost`` (PRIM user erin); its PRIM adapter reaches
  ``sip.localhost`` and ``loop.localhost`` through peer B;
- gateway B serves SIP (the Kamailio of ``sip.localhost``) and PRIM domain
  ``b.prim.localhost``; its PRIM adapter reaches ``xmpp.localhost`` and -- the
  overlap -- ``loop.localhost`` through peer A.

The gateways federate server-to-server over PRIM (CRAM-MD5 with a shared
secret, on loopback without TLS).  Shown: a message crosses both gateways
and is delivered exactly once, also when the SIP sender retransmits or the
XMPP sender repeats an origin-id; a message for the domain both route to
each other ends with a failure answered to the sender and is delivered
nowhere; MaxForwards (PRIM ``X-Max-Forwards``) counts down across both
gateways and a message that runs out of hops fails as a loop.
"""

from __future__ import annotations

import os
import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from cpimgw.adapters.prim.client import PrimClient
from tests.e2e import sip_users
from tests.e2e.peers import gateway_config, sip_body, sip_header, traced_requests, wait_until, xmpp_jid_of
from tests.e2e.world import WAIT, ThreeNetworksTestCase

SECRET = "a-b-shared-secret"
#: After the first copy arrived, how long a second one is waited for (a bounded wait, then the count).
SETTLE = 2.0


def _peers(entries: dict[str, int]) -> str:
    items = ", ".join(f'"{domain}" = {{ host = "127.0.0.1", port = {port}, secret = "{SECRET}", tls = false }}'
                      for domain, port in entries.items())
    return f"peers = {{ {items} }}"


class TwoGatewaysTestCase(ThreeNetworksTestCase):
    """Prosody, Kamailio, gateway A (XMPP + PRIM) and gateway B (SIP + PRIM) federating over PRIM."""

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        yield self.start_peers()
        a, b = self.gateway_ports(), self.gateway_ports()
        common = {"xmpp_component_port": self.prosody.component_port, "kamailio_port": self.kamailio.port}
        config_a = gateway_config(name="gateway-a", **common, **a, extra=[
            ("[adapters.sip]\n", "[adapters.sip]\nenabled = false\n"),
            ('local_domains = ["prim.localhost"]', 'local_domains = ["a.prim.localhost"]'),
            ('users = { carol = "carolpw", dave = "davepw" }',
             'users = { erin = "erinpw" }\ns2s_require_tls = false\n'
             + _peers({"b.prim.localhost": b["prim_s2s_port"], "sip.localhost": b["prim_s2s_port"],
                       "loop.localhost": b["prim_s2s_port"]})),
        ])
        config_b = gateway_config(name="gateway-b", **common, **b, extra=[
            ("[adapters.xmpp]\n", "[adapters.xmpp]\nenabled = false\n"),
            ('local_domains = ["prim.localhost"]', 'local_domains = ["b.prim.localhost"]'),
            ('users = { carol = "carolpw", dave = "davepw" }',
             "users = {}\ns2s_require_tls = false\n"
             + _peers({"a.prim.localhost": a["prim_s2s_port"], "xmpp.localhost": a["prim_s2s_port"],
                       "loop.localhost": a["prim_s2s_port"]})),
        ])
        self.gateway_a = yield self.start_gateway("gateway-a", config_a)
        self.gateway_b = yield self.start_gateway("gateway-b", config_b, ready_xmpp=False)
        self.gateway = self.gateway_b  # the SIP helpers talk to B
        self.ports = b
        self.ports_a = a
        self.alice = yield self.xmpp_user("alice")

    @inlineCallbacks
    def settle(self):  # type: ignore[no-untyped-def]
        """A bounded wait for a copy that should not come."""
        yield deferLater(reactor, SETTLE, lambda: None)

    def logs(self) -> str:
        return f"--- gateway A ---\n{self.gateway_a.log()[-3000:]}\n--- gateway B ---\n{self.gateway_b.log()[-3000:]}"


class DeliveredOnceTests(TwoGatewaysTestCase):

    @inlineCallbacks
    def test_message_crosses_both_gateways_once(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob", count=2)
        self.alice.send_message(xmpp_jid_of("bob", "sip.localhost"), "through A and B")
        yield wait_until(lambda: traced_requests(workdir, "MESSAGE"), WAIT, what="bob's message")
        yield self.settle()
        [message] = traced_requests(workdir, "MESSAGE")
        self.assertIn("sip:alice@xmpp.localhost", sip_header(message, "From"))
        self.assertIn(b"through A and B", sip_body(message))
        yield uas.stop()

    @inlineCallbacks
    def test_xmpp_origin_id_repeated_is_delivered_once(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob", count=2)
        jid = xmpp_jid_of("bob", "sip.localhost")
        for stanza_id in ("first-try", "second-try"):  # a client resending after a reconnect (XEP-0359)
            self.alice.call(self.alice.client.send_raw,
                            f"<message to='{jid}' type='chat' id='{stanza_id}'><body>only once</body>"
                            "<origin-id xmlns='urn:xmpp:sid:0' id='origin-42'/></message>")
        yield wait_until(lambda: traced_requests(workdir, "MESSAGE"), WAIT, what="bob's message")
        yield self.settle()
        self.assertEqual(len(traced_requests(workdir, "MESSAGE")), 1, self.logs())
        yield uas.stop()

    @inlineCallbacks
    def test_sip_resend_is_delivered_once(self):  # type: ignore[no-untyped-def]
        # The same MESSAGE twice: the second a new transaction (another branch, another sipp) with
        # the same Call-ID and CSeq -- a UA resending after it lost the answer (RFC 3261 §8.1.3.1);
        # within each, sipp retransmits every 500 ms until the answer comes (RFC 3261 §17.1.2).
        # sipp matches answers to calls by the Call-ID it makes: -cid_str makes it the same in both runs.
        call_id = f"resend-{os.getpid()}-{id(self)}-%u@%s"
        runs = []
        for _ in range(2):
            scenario = sip_users.message_uac("bob@sip.localhost", "alice@xmpp.localhost", "say it once", cseq=7)
            workdir = yield self.sipp_ok(scenario, self.gateway_sip, "resend", ("-cid_str", call_id))
            runs.append(traced_requests(workdir, "MESSAGE"))
        [first], [second] = runs
        self.assertEqual(sip_header(first, "Call-ID"), sip_header(second, "Call-ID"))
        self.assertNotEqual(sip_header(first, "Via"), sip_header(second, "Via"))
        yield wait_until(lambda: self.alice.messages, WAIT, what="alice's message")
        yield self.settle()
        self.assertEqual([m["body"] for m in self.alice.messages], ["say it once\n"], self.logs())


class NoLoopTests(TwoGatewaysTestCase):

    @inlineCallbacks
    def test_overlapping_domain_ends_with_failure(self):  # type: ignore[no-untyped-def]
        self.alice.call(self.alice.client.send_raw,
                        "<message to='x\\40loop.localhost@gw.localhost' type='chat' id='loop-1'>"
                        "<body>round and round?</body></message>")
        yield wait_until(lambda: any("loop-1" in s and "type=\"error\"" in s for s in self.alice.stanzas), WAIT,
                         what="the error answered to alice")
        yield self.settle()
        [error] = [s for s in self.alice.stanzas if "loop-1" in s]
        # B refuses to relay between PRIM servers (403, "we do not serve loop.localhost"): the
        # loop ends at its first hop, and alice is told why.
        condition = re.search(r"<([a-z-]+) xmlns=[\"']urn:ietf:params:xml:ns:xmpp-stanzas[\"']", error)
        self.assertIsNotNone(condition, error)
        self.assertEqual(condition.group(1), "forbidden", error)
        self.assertEqual(self.gateway_a.count_in_log("PRIM connection to loop.localhost"), 1, self.logs())
        self.assertEqual(self.gateway_b.count_in_log("PRIM connection to loop.localhost"), 0, self.logs())

    @inlineCallbacks
    def erin(self):  # type: ignore[no-untyped-def]
        client = PrimClient(reactor, "erin@a.prim.localhost", "erinpw")
        yield client.connect("127.0.0.1", self.ports_a["prim_c2s_port"]).addTimeout(WAIT, reactor)
        self.addCleanup(client.logout)
        return client

    def send(self, client: PrimClient, to: str, text: bytes, max_forwards: int, ok: tuple[int, ...]):  # type: ignore[no-untyped-def]
        return client.request("SEND", [
            ("From", client.im), ("To", to), ("Message-ID", f"mf-{max_forwards}"), ("Conversation-ID", "mf"),
            ("Content-Type", "text/plain; charset=UTF-8"), ("X-Max-Forwards", str(max_forwards))],
            text, ok=ok).addTimeout(WAIT, reactor)

    @inlineCallbacks
    def test_max_forwards_counts_down_across_gateways(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob", count=2)
        erin = yield self.erin()
        # One hop left: gateway A may still pass it on, gateway B may not.
        answer = yield self.send(erin, "im:bob@sip.localhost", b"one hop only", 1, ok=(200, 502, 483, 400, 408))
        self.assertEqual(answer.code, 502, (answer, self.logs()))  # loop-detected (protocols.md PRIM column)
        answer = yield self.send(erin, "im:bob@sip.localhost", b"enough hops", 5, ok=(200,))
        self.assertEqual(answer.code, 200)
        yield wait_until(lambda: traced_requests(workdir, "MESSAGE"), WAIT, what="bob's message")
        yield self.settle()
        [message] = traced_requests(workdir, "MESSAGE")
        self.assertIn(b"enough hops", sip_body(message))
        # 5 at A's bus, 4 onward to B, 3 onward to SIP, then Kamailio's own hop.
        self.assertEqual(sip_header(message, "Max-Forwards"), "2")
        yield uas.stop()
