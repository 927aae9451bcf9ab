"""Three networks, one conversation: messages and presence in all six directions through one gateway.

One gateway process started by ``twistd -n cpimgw --config`` (from
``conf/three-networks.toml``) joins a real Prosody (XMPP users alice and
juliet of ``xmpp.localhost``, slixmpp clients), a real Kamailio (registrar
and presence server of ``sip.localhost``; its users are sipp scenarios) and
its own PRIM server (carol of ``prim.localhost``, the cpimgw PRIM client).

Messages (RFC 3860 through RFC 3922 / RFC 3428 / PRIM SEND): every test
checks the text, the sender and the recipient as the receiving user's own
software shows them.  Presence (RFC 3859 through RFC 3922 / RFC 3856 /
PRIM SUBSCRIBE): the watcher on one network subscribes, the presentity on
another changes her state (a fresh note), and the watcher sees the change.
"""

from __future__ import annotations

import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from cpimgw.cpim.message import parse_message
from tests.e2e.peers import sip_body, sip_header, traced_requests, tuple_with_note, wait_until, xmpp_jid_of
from tests.e2e.world import WAIT, ThreeNetworksTestCase


def text_of(body: bytes, content_type: str) -> bytes:
    """The text a user reads: the body, or the content inside a Message/CPIM wrapper (RFC 3862)."""
    if content_type.lower().startswith("message/cpim"):
        return parse_message(body).body
    return body


def name_addr_uri(value: str) -> str:
    """The address-of-record in a From/To value: the URI in <>, without its parameters (;gr= is the instance)."""
    uri = value.split("<", 1)[1].split(">", 1)[0] if "<" in value else value.split(";", 1)[0]
    return uri.split(";", 1)[0]


def first_tuple(document: bytes) -> tuple[str, str]:
    """(id, basic status) of the first PIDF tuple of ``document`` -- what a watcher showing one state reads."""
    from lxml import etree

    pidf = "urn:ietf:params:xml:ns:pidf"
    root = etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))
    first = root.find(f"{{{pidf}}}tuple")
    if first is None:
        raise AssertionError(f"no tuple in {document!r}")
    basic = first.find(f"{{{pidf}}}status/{{{pidf}}}basic")
    return first.get("id"), (basic.text or "").strip() if basic is not None else ""


def fresh(word: str) -> str:
    """A note nobody has published yet (so the watcher's change is unambiguous)."""
    return f"{word}-{uuid.uuid4().hex[:8]}"


class MessageTests(ThreeNetworksTestCase):
    """A message in each of the six directions, checked at the receiver."""

    @inlineCallbacks
    def test_xmpp_to_sip(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob")
        self.alice.send_message(xmpp_jid_of("bob", "sip.localhost"), "Hello Bob, from XMPP")
        code, output = yield uas.ended
        self.assertEqual(code, 0, output[-2000:])
        [message] = traced_requests(workdir, "MESSAGE")
        self.assertEqual(name_addr_uri(sip_header(message, "From")), "sip:alice@xmpp.localhost")
        self.assertEqual(name_addr_uri(sip_header(message, "To")), "sip:bob@sip.localhost")
        self.assertEqual(text_of(sip_body(message), sip_header(message, "Content-Type")), b"Hello Bob, from XMPP")

    @inlineCallbacks
    def test_sip_to_xmpp(self):  # type: ignore[no-untyped-def]
        workdir = yield self.sip_send("bob@sip.localhost", "alice@xmpp.localhost", "Hello Alice, from SIP")
        [sent] = traced_requests(workdir, "MESSAGE")
        self.assertEqual(sip_body(sent), b"Hello Alice, from SIP\r\n")  # sipp ends every body line with CRLF
        yield wait_until(lambda: self.alice.messages, WAIT, what="alice's message")
        [received] = self.alice.messages
        self.assertEqual(received["body"], "Hello Alice, from SIP\n")  # XML end-of-line handling: CRLF is LF
        self.assertEqual(received["from"].split("/")[0], xmpp_jid_of("bob", "sip.localhost"))
        self.assertEqual(received["to"].split("/")[0], "alice@xmpp.localhost")

    @inlineCallbacks
    def test_xmpp_to_prim(self):  # type: ignore[no-untyped-def]
        self.alice.send_message(xmpp_jid_of("carol", "prim.localhost"), "Hello Carol, from XMPP")
        send = yield self.carol.wait_for("SEND").addTimeout(WAIT, reactor)
        self.assertEqual(send.header("From"), "im:alice@xmpp.localhost")
        self.assertEqual(send.header("To"), "im:carol@prim.localhost")
        self.assertEqual(text_of(send.body, send.header("Content-Type")), b"Hello Carol, from XMPP")

    @inlineCallbacks
    def test_prim_to_xmpp(self):  # type: ignore[no-untyped-def]
        answer = yield self.carol.send("im:alice@xmpp.localhost", "Hello Alice, from PRIM".encode()).addTimeout(
            WAIT, reactor)
        self.assertIn(answer.code, (200, 101))
        yield wait_until(lambda: self.alice.messages, WAIT, what="alice's message")
        [received] = self.alice.messages
        self.assertEqual(received["body"], "Hello Alice, from PRIM")
        self.assertEqual(received["from"].split("/")[0], xmpp_jid_of("carol", "prim.localhost"))
        self.assertEqual(received["to"].split("/")[0], "alice@xmpp.localhost")

    @inlineCallbacks
    def test_sip_to_prim(self):  # type: ignore[no-untyped-def]
        workdir = yield self.sip_send("bob@sip.localhost", "carol@prim.localhost", "Hello Carol, from SIP")
        [sent] = traced_requests(workdir, "MESSAGE")
        send = yield self.carol.wait_for("SEND").addTimeout(WAIT, reactor)
        self.assertEqual(send.header("From"), "im:bob@sip.localhost")
        self.assertEqual(send.header("To"), "im:carol@prim.localhost")
        self.assertEqual(text_of(send.body, send.header("Content-Type")), b"Hello Carol, from SIP\r\n")
        self.assertEqual(text_of(send.body, send.header("Content-Type")), sip_body(sent))

    @inlineCallbacks
    def test_prim_to_sip(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob")
        answer = yield self.carol.send("im:bob@sip.localhost", b"Hello Bob, from PRIM").addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        code, output = yield uas.ended
        self.assertEqual(code, 0, output[-2000:])
        [message] = traced_requests(workdir, "MESSAGE")
        self.assertEqual(name_addr_uri(sip_header(message, "From")), "sip:carol@prim.localhost")
        self.assertEqual(name_addr_uri(sip_header(message, "To")), "sip:bob@sip.localhost")
        self.assertEqual(text_of(sip_body(message), sip_header(message, "Content-Type")), b"Hello Bob, from PRIM")


class PresenceTests(ThreeNetworksTestCase):
    """A presence subscription in each of the six directions: subscribe, the presentity changes, the watcher sees it."""

    def xmpp_saw(self, client, jid: str, note: str):  # type: ignore[no-untyped-def]
        """Wait until ``client`` received available presence from ``jid`` (any resource) with status ``note``."""
        def seen() -> list:
            return [p for p in client.presences
                    if p["from"].split("/")[0] == jid and p["status"] == note and p["type"] in ("available", "")]
        return wait_until(lambda: bool(seen()), WAIT, what=f"presence {note!r} from {jid}").addCallback(lambda _: seen())

    @inlineCallbacks
    def xmpp_subscribe(self, client, jid: str):  # type: ignore[no-untyped-def]
        """``client`` subscribes to ``jid`` and waits until her roster says the subscription is on."""
        client.call(client.client.send_presence, pto=jid, ptype="subscribe")
        yield wait_until(lambda: client.roster_subscription(jid) in ("to", "both"), WAIT,
                         what=f"the subscription to {jid} to be approved")

    def xmpp_authorised(self, client, jid: str):  # type: ignore[no-untyped-def]
        """Wait until ``client`` (slixmpp auto-authorises) has let ``jid`` see her presence."""
        return wait_until(lambda: client.roster_subscription(jid) in ("from", "both"), WAIT,
                          what=f"{client.jid} to authorise {jid}")

    @inlineCallbacks
    def test_xmpp_watches_sip(self):  # type: ignore[no-untyped-def]
        bob = xmpp_jid_of("bob", "sip.localhost")
        yield self.xmpp_subscribe(self.alice, bob)
        note = fresh("bob-at-his-desk")
        yield self.sip_publish("bob@sip.localhost", "open", note)
        [presence, *_] = yield self.xmpp_saw(self.alice, bob, note)
        self.assertEqual(presence["to"].split("/")[0], "alice@xmpp.localhost")

    @inlineCallbacks
    def test_xmpp_watches_prim(self):  # type: ignore[no-untyped-def]
        carol = xmpp_jid_of("carol", "prim.localhost")
        before = fresh("carol-at-home")
        answer = yield self.carol.publish_status("open", note=before).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        yield self.xmpp_subscribe(self.alice, carol)
        yield self.xmpp_saw(self.alice, carol, before)
        note = fresh("carol-in-the-garden")
        answer = yield self.carol.publish_status("open", note=note).addTimeout(WAIT, reactor)
        self.assertEqual(answer.code, 200)
        [presence, *_] = yield self.xmpp_saw(self.alice, carol, note)
        self.assertEqual(presence["to"].split("/")[0], "alice@xmpp.localhost")

    @inlineCallbacks
    def sip_watch_until_changed(self, target: str, change):  # type: ignore[no-untyped-def]
        """dan@sip.localhost (sipp) watches ``target``; after the first NOTIFY, ``change(note)``; wait for the note."""
        note = fresh("sip-watch")
        process, workdir = self.sip_watch("dan@sip.localhost", target)
        yield wait_until(lambda: traced_requests(workdir, "NOTIFY") or process.ended.called, WAIT,
                         what=f"the first NOTIFY of {target}")
        self.assertFalse(process.ended.called, process.protocol.output.decode("utf-8", "replace")[-2000:])
        self.assertNotIn(note.encode(), traced_requests(workdir, "NOTIFY")[0])
        yield change(note)

        def with_note() -> list[bytes]:
            return [n for n in traced_requests(workdir, "NOTIFY") if note.encode() in sip_body(n)]

        yield wait_until(lambda: with_note() or process.ended.called, WAIT, what=f"the NOTIFY with {note!r}")
        self.assertFalse(process.ended.called, process.protocol.output.decode("utf-8", "replace")[-2000:])
        yield process.stop()
        [last, *_] = with_note()
        self.assertEqual(name_addr_uri(sip_header(last, "From")), f"sip:{target}")
        self.assertEqual(name_addr_uri(sip_header(last, "To")), "sip:dan@sip.localhost")
        self.assertTrue(sip_header(last, "Subscription-State").startswith("active"), sip_header(last, "Subscription-State"))
        self.assertEqual(sip_header(last, "Content-Type"), "application/pidf+xml")
        return sip_body(last), note

    @inlineCallbacks
    def test_sip_watches_xmpp(self):  # type: ignore[no-untyped-def]
        @inlineCallbacks
        def change(note: str):  # type: ignore[no-untyped-def]
            yield self.xmpp_authorised(self.alice, xmpp_jid_of("dan", "sip.localhost"))
            self.alice.send_presence(pshow="away", pstatus=note)

        body, note = yield self.sip_watch_until_changed("alice@xmpp.localhost", change)
        self.assertEqual(tuple_with_note(body, note), ("ID-desk", "open"))
        self.assertEqual(first_tuple(body), ("ID-desk", "open"))  # no bare-JID tuple in front of it
        self.assertIn(b"away", body)

    @inlineCallbacks
    def test_sip_watches_prim(self):  # type: ignore[no-untyped-def]
        def change(note: str):  # type: ignore[no-untyped-def]
            return self.carol.publish_status("open", note=note).addTimeout(WAIT, reactor)

        body, note = yield self.sip_watch_until_changed("carol@prim.localhost", change)
        self.assertEqual(tuple_with_note(body, note)[1], "open")

    @inlineCallbacks
    def prim_watch(self, target: str):  # type: ignore[no-untyped-def]
        answer = yield self.carol.subscribe(target, 600).addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 201))
        yield self.carol.wait_for("NOTIFY", lambda r: r.header("From") == target).addTimeout(WAIT, reactor)

    @inlineCallbacks
    def test_prim_watches_xmpp(self):  # type: ignore[no-untyped-def]
        yield self.prim_watch("pres:alice@xmpp.localhost")
        yield self.xmpp_authorised(self.alice, xmpp_jid_of("carol", "prim.localhost"))
        note = fresh("alice-in-a-meeting")
        self.alice.send_presence(pshow="away", pstatus=note)
        notify = yield self.carol.wait_for("NOTIFY", lambda r: note.encode() in r.body).addTimeout(WAIT, reactor)
        self.assertEqual(notify.header("From"), "pres:alice@xmpp.localhost")
        self.assertEqual(notify.header("To"), "pres:carol@prim.localhost")
        self.assertEqual(tuple_with_note(notify.body, note), ("ID-desk", "open"))
        self.assertEqual(first_tuple(notify.body), ("ID-desk", "open"))  # no bare-JID tuple in front of it
        self.assertIn(b"away", notify.body)

    @inlineCallbacks
    def test_prim_watches_sip(self):  # type: ignore[no-untyped-def]
        # bob publishes first, then changes to closed in a second publication.
        before = fresh("bob-at-his-desk")
        yield self.sip_publish("bob@sip.localhost", "open", before, tuple_id="t1")
        yield self.prim_watch("pres:bob@sip.localhost")
        # The first notify is the gateway's current knowledge (RFC 3859 §4.4): it may come before
        # Kamailio's NOTIFY of bob's publication reaches the gateway, so wait for that state.
        yield self.carol.wait_for("NOTIFY", lambda r: before.encode() in r.body).addTimeout(WAIT, reactor)
        note = fresh("bob-gone-home")
        yield self.sip_publish("bob@sip.localhost", "closed", note, tuple_id="t2")
        notify = yield self.carol.wait_for("NOTIFY", lambda r: note.encode() in r.body).addTimeout(WAIT, reactor)
        self.assertEqual(notify.header("From"), "pres:bob@sip.localhost")
        self.assertEqual(notify.header("To"), "pres:carol@prim.localhost")
        self.assertEqual(tuple_with_note(notify.body, note), ("t2", "closed"))


class UnpublishedPresentityTests(ThreeNetworksTestCase):
    """RFC 3859 §4.4: a successful subscribe is followed at once by a notify with the current state --
    also when the presentity has published nothing (a PIDF document without tuples, RFC 3863 §4.1)."""

    @inlineCallbacks
    def test_xmpp_watches_unpublished_prim(self):  # type: ignore[no-untyped-def]
        # dave (PRIM) never logs in or publishes: alice's subscription is still confirmed ("subscribed").
        dave = xmpp_jid_of("dave", "prim.localhost")
        self.alice.call(self.alice.client.send_presence, pto=dave, ptype="subscribe")
        yield wait_until(lambda: self.alice.roster_subscription(dave) in ("to", "both"), WAIT,
                         what=f"'subscribed' from {dave}")
        # Nothing is known of dave: he is never shown available.
        self.assertFalse([p for p in self.alice.presences
                          if p["from"].split("/")[0] == dave and p["type"] in ("available", "")])

    @inlineCallbacks
    def test_prim_watches_unpublished_sip(self):  # type: ignore[no-untyped-def]
        # erin (SIP, through Kamailio) has published nothing: carol still gets her first NOTIFY.
        target = f"pres:erin-{uuid.uuid4().hex[:6]}@sip.localhost"
        answer = yield self.carol.subscribe(target, 600).addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 201))
        notify = yield self.carol.wait_for("NOTIFY", lambda r: r.header("From") == target).addTimeout(WAIT, reactor)
        self.assertEqual(notify.header("To"), "pres:carol@prim.localhost")
        self.assertNotEqual(notify.header("Duration"), "0")  # active, not a final notify

    @inlineCallbacks
    def test_sip_watches_unpublished_prim(self):  # type: ignore[no-untyped-def]
        process, workdir = self.sip_watch("dan@sip.localhost", "dave@prim.localhost")
        yield wait_until(lambda: traced_requests(workdir, "NOTIFY") or process.ended.called, WAIT,
                         what="the first NOTIFY of dave@prim.localhost")
        [first, *_] = traced_requests(workdir, "NOTIFY")
        yield process.stop()
        self.assertTrue(sip_header(first, "Subscription-State").startswith("active"),
                        sip_header(first, "Subscription-State"))
        self.assertEqual(name_addr_uri(sip_header(first, "From")), "sip:dave@prim.localhost")
