"""Three networks with a real SIP user agent: baresip 1.0 through the twistd gateway (issue 6).

The world of :class:`tests.e2e.world.ThreeNetworksTestCase` (Prosody with
alice, Kamailio for ``sip.localhost``, one gateway by ``twistd``, carol on
PRIM) plus ``frank@sip.localhost`` played by a headless baresip
(:class:`tests.interop.baresip.Baresip`, commands through its ``cons``
module).  As ``conf/three-networks.toml`` describes, frank's user agent
sends its requests for users of other networks to the gateway (its
``outbound`` proxy), and is registered at Kamailio (RFC 3261 §10, the
REGISTER sent by sipp on baresip's behalf, baresip's own contact address),
so that the gateway reaches him through Kamailio.

- presence (RFC 3856 / RFC 6665 watcher, PIDF RFC 3863): frank watches
  alice (XMPP) and carol (PRIM) and sees each change state in
  ``/contacts``;
- messages (RFC 3428): frank receives a MESSAGE from alice and from carol
  (checked in baresip's ``-s`` SIP trace: the MESSAGE with its text and
  baresip's own 200 OK -- baresip 1.0 writes a received message only to its
  console UI, not to stdout), and sends one to each with ``/message``.

baresip 1.0 accepts only ``text/plain`` in a MESSAGE (a ``message/cpim``
one gets 415 with ``Accept: text/plain``); the gateway runs the default
``message_mode = "cpim"`` and falls back to the native form on that 415
(retried once, then remembered per target): the configuration is
``conf/three-networks.toml`` as :class:`ThreeNetworksTestCase` starts it.
"""

from __future__ import annotations

import os
import re
import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from cpimgw.cpim.message import parse_message
from tests.e2e import sip_users
from tests.e2e.peers import wait_until, xmpp_jid_of
from tests.e2e.world import WAIT, ThreeNetworksTestCase
from tests.interop import require_program
from tests.interop.baresip import Baresip

FRANK = "frank@sip.localhost"


#: baresip 1.0 answers a ``message/cpim`` MESSAGE with 415 (``Accept: text/plain``): the gateway runs its
#: default ``message_mode = "cpim"`` and retries such a MESSAGE once with the native form (RFC 3261 §8.1.3.5).

#: One SIP message in baresip's ``-s`` trace: ``ESC[36;1m#`` and the ``UDP a -> b`` line, the message, ``ESC[;m``.
_TRACE = re.compile(r"\x1b\[36;1m#\r?\n(?:UDP|TCP) (\S+) -> (\S+)\r?\n")


def fresh(word: str) -> str:
    """A note nobody has published yet (so the change baresip sees is unambiguous)."""
    return f"{word}-{uuid.uuid4().hex[:8]}"


def traced(log: str) -> list[str]:
    """The SIP messages baresip traced (``-s``), in order, without the colour codes."""
    parts = _TRACE.split(log)[1:]
    return [parts[i + 2].split("\x1b[;m")[0].replace("\r\n", "\n") for i in range(0, len(parts), 3)]


def header(message: str, name: str) -> str:
    for line in message.partition("\n\n")[0].split("\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def body(message: str) -> str:
    return message.partition("\n\n")[2]


def requests(log: str, method: str) -> list[str]:
    return [m for m in traced(log) if m.startswith(method + " ")]


def answer_to(log: str, request: str) -> str:
    """The final response baresip (or anyone it traced) gave to ``request`` (same Call-ID and CSeq), or ""."""
    for message in traced(log):
        if (message.startswith("SIP/2.0 ") and not message.startswith("SIP/2.0 1")
                and header(message, "Call-ID") == header(request, "Call-ID")
                and header(message, "CSeq") == header(request, "CSeq")):
            return message.split("\n", 1)[0]
    return ""


class BaresipUserTests(ThreeNetworksTestCase):
    """frank@sip.localhost is a real baresip: he watches, receives and sends across the gateway."""

    @inlineCallbacks
    def baresip_user(self, contacts: list[str]):  # type: ignore[no-untyped-def]
        """Start baresip as frank watching ``contacts`` (``presence=p2p``), registered at Kamailio.

        Its account has no REGISTER of its own (``regint=0``) and sends every
        request to the gateway (``outbound``); sipp registers baresip's own
        address for frank at Kamailio, where the gateway's requests for
        sip.localhost go.
        """
        require_program("baresip")
        workdir = os.path.join(self.dir, f"baresip-{next(self._runs)}")
        os.makedirs(workdir)
        baresip = Baresip(
            workdir,
            f'<sip:{FRANK}>;regint=0;pubint=0;outbound="sip:{self.gateway_sip};transport=udp"',
            [f'"{c.split("@")[0]}" <sip:{c}>;presence=p2p' for c in contacts],
            sip_trace=True,
        )
        self.addCleanup(baresip.stop)
        yield self.sipp_ok(sip_users.register_uac(FRANK, baresip.port), self.kamailio_sip, "frank-register")
        return baresip

    def failure_context(self, baresip: Baresip) -> str:
        return f"\n--- baresip ---\n{baresip.log[-4000:]}\n--- gateway ---\n{self.gateway.log()[-3000:]}"

    @inlineCallbacks
    def contact_shown(self, baresip: Baresip, contact: str, status: str):  # type: ignore[no-untyped-def]
        """Poll ``/contacts`` (bounded by WAIT) until baresip shows ``contact`` with ``status``; return the line."""
        line = ""
        for _ in range(int(WAIT / 0.5)):
            answer = yield baresip.command("/contacts", wait=0.3)
            found = [ln for ln in answer.splitlines() if f"<sip:{contact}>" in ln]
            # "> " marks the current contact; the status is coloured.
            line = re.sub(r"\x1b\[[0-9;]*m", "", found[-1]).lstrip("> ").strip() if found else ""
            if line.split(" ", 1)[0] == status:
                return line
            yield deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"baresip never showed {contact} {status}: last {line!r}" + self.failure_context(baresip))

    @inlineCallbacks
    def notify_with(self, baresip: Baresip, contact: str, text: str):  # type: ignore[no-untyped-def]
        """Wait until baresip received a NOTIFY from ``contact`` whose PIDF contains ``text``; return its body."""
        def found() -> list[str]:
            return [n for n in requests(baresip.log, "NOTIFY")
                    if f"<sip:{contact}>" in header(n, "From") and text in body(n)]

        try:
            yield wait_until(lambda: bool(found()), WAIT, 0.1, what=f"a NOTIFY of {contact} with {text!r}")
        except AssertionError as error:
            raise AssertionError(str(error) + self.failure_context(baresip)) from None
        [notify, *_] = found()
        self.assertTrue(header(notify, "Subscription-State").startswith("active"), header(notify, "Subscription-State"))
        self.assertEqual(header(notify, "Content-Type"), "application/pidf+xml")
        return body(notify)

    # -- presence ---------------------------------------------------------------------------------------------

    @inlineCallbacks
    def test_baresip_watches_xmpp(self):  # type: ignore[no-untyped-def]
        baresip = yield self.baresip_user(["alice@xmpp.localhost"])
        # alice (slixmpp) authorises frank's subscription and is available: baresip shows her Online.
        yield wait_until(lambda: self.alice.roster_subscription(xmpp_jid_of("frank", "sip.localhost")) in ("from", "both"),
                         WAIT, what="alice to authorise frank")
        yield self.contact_shown(baresip, "alice@xmpp.localhost", "Online")
        # away with a note: the NOTIFY reaches baresip (basic still open: XMPP away is available, RFC 7248 §5).
        note = fresh("alice-in-a-meeting")
        self.alice.send_presence(pshow="away", pstatus=note)
        document = yield self.notify_with(baresip, "alice@xmpp.localhost", note)
        self.assertIn("<basic>open</basic>", document)
        self.assertIn("away", document)
        # gone: baresip shows her Offline.
        self.alice.send_presence(ptype="unavailable")
        line = yield self.contact_shown(baresip, "alice@xmpp.localhost", "Offline")
        self.assertIn("<sip:alice@xmpp.localhost>", line)

    @inlineCallbacks
    def test_baresip_watches_prim(self):  # type: ignore[no-untyped-def]
        baresip = yield self.baresip_user(["carol@prim.localhost"])
        # carol has published nothing yet: baresip's first NOTIFY shows her Offline.
        yield wait_until(lambda: bool(requests(baresip.log, "NOTIFY")), WAIT, what="the first NOTIFY of carol")
        yield self.contact_shown(baresip, "carol@prim.localhost", "Offline")
        note = fresh("carol-at-home")
        answer = yield self.carol.publish_status("open", note=note).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        self.assertIn("<basic>open</basic>", (yield self.notify_with(baresip, "carol@prim.localhost", note)))
        yield self.contact_shown(baresip, "carol@prim.localhost", "Online")
        note = fresh("carol-gone-out")
        answer = yield self.carol.publish_status("closed", note=note).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        self.assertIn("<basic>closed</basic>", (yield self.notify_with(baresip, "carol@prim.localhost", note)))
        yield self.contact_shown(baresip, "carol@prim.localhost", "Offline")

    # -- messages ---------------------------------------------------------------------------------------------

    @inlineCallbacks
    def received_by_baresip(self, baresip: Baresip, text: str, sender: str):  # type: ignore[no-untyped-def]
        """Wait for the text/plain MESSAGE with ``text`` in baresip's trace and its 200 OK; return the MESSAGE.

        (A message/cpim MESSAGE with ``text`` before it is baresip's 415, see :meth:`refused_by_baresip`.)
        """
        def found() -> list[str]:
            return [m for m in requests(baresip.log, "MESSAGE")
                    if text in body(m) and header(m, "Content-Type").startswith("text/plain")]

        yield wait_until(lambda: bool(found()) and bool(answer_to(baresip.log, found()[0])), WAIT, 0.1,
                         what=f"baresip to receive {text!r}")
        [message, *_] = found()
        self.assertEqual(answer_to(baresip.log, message), "SIP/2.0 200 OK", self.failure_context(baresip))
        self.assertIn(f"<sip:{sender}", header(message, "From"))
        self.assertIn(f"<sip:{FRANK}>", header(message, "To"))
        self.assertTrue(header(message, "Content-Type").startswith("text/plain"), header(message, "Content-Type"))
        self.assertEqual(body(message), text)
        return message

    def refused_by_baresip(self, baresip: Baresip, text: str) -> list[str]:
        """baresip's answers to the message/cpim MESSAGEs with ``text`` (the form the gateway sends first)."""
        return [answer_to(baresip.log, m) for m in requests(baresip.log, "MESSAGE")
                if text in body(m) and header(m, "Content-Type").startswith("message/cpim")]

    @inlineCallbacks
    def test_baresip_receives_from_xmpp_and_prim(self):  # type: ignore[no-untyped-def]
        baresip = yield self.baresip_user([])
        self.alice.send_message(xmpp_jid_of("frank", "sip.localhost"), "Hello Frank, from XMPP")
        yield self.received_by_baresip(baresip, "Hello Frank, from XMPP", "alice@xmpp.localhost")
        # the default message_mode = "cpim": baresip's 415 (Accept: text/plain), then the native retry
        [refusal] = self.refused_by_baresip(baresip, "Hello Frank, from XMPP")
        self.assertTrue(refusal.startswith("SIP/2.0 415"), refusal)
        answer = yield self.carol.send("im:frank@sip.localhost", b"Hello Frank, from PRIM").addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        yield self.received_by_baresip(baresip, "Hello Frank, from PRIM", "carol@prim.localhost")
        # remembered: frank now gets the native form at once
        self.assertEqual(self.refused_by_baresip(baresip, "Hello Frank, from PRIM"), [])

    @inlineCallbacks
    def test_baresip_sends_to_xmpp_and_prim(self):  # type: ignore[no-untyped-def]
        baresip = yield self.baresip_user(["alice@xmpp.localhost", "carol@prim.localhost"])
        # /message goes to baresip's current contact: the first one, then the next.
        yield baresip.command("/message Hello Alice, from baresip")
        yield wait_until(lambda: self.alice.messages, WAIT, what="alice's message" + self.failure_context(baresip))
        [received] = self.alice.messages
        self.assertEqual(received["body"], "Hello Alice, from baresip")
        self.assertEqual(received["from"].split("/")[0], xmpp_jid_of("frank", "sip.localhost"))
        self.assertEqual(received["to"].split("/")[0], "alice@xmpp.localhost")
        shown = yield baresip.command("/contact_next")
        self.assertIn("carol <sip:carol@prim.localhost>", shown)
        yield baresip.command("/message Hello Carol, from baresip")
        send = yield self.carol.wait_for("SEND").addTimeout(WAIT, reactor)
        self.assertEqual(send.header("From"), "im:frank@sip.localhost")
        self.assertEqual(send.header("To"), "im:carol@prim.localhost")
        self.assertEqual(parse_message(send.body).body if send.header("Content-Type").startswith("message/cpim")
                         else send.body, b"Hello Carol, from baresip")
        [sent] = [m for m in requests(baresip.log, "MESSAGE") if "Hello Carol" in body(m)]
        self.assertEqual(answer_to(baresip.log, sent), "SIP/2.0 200 OK")
