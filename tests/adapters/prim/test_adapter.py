"""Unit tests of the PRIM adapter on a bus driven by MemoryReactorClock, connections on StringTransport."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw.adapters.prim import presence_doc, sasl, wire
from cpimgw.adapters.prim.adapter import PrimAdapter, PrimSettings, compose_tuples
from cpimgw.adapters.prim.presence_doc import simple_pidf
from cpimgw.adapters.prim.server import Session
from cpimgw.adapters.prim.wire import Parser, Request
from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import MEDIA_PIDF, Condition, Content, Message, Publish, Status, Subscribe, failure
from cpimgw.cpim.uri import im_uri, pres_uri
from cpimgw.interfaces import IAdapter, IMessaging, IPresence
from cpimgw.presence import empty_pidf
from cpimgw.testing import BusFixture, settle

CLASS_TABLE = b'<classtable><class name="friends"><watcher>bff@alpha.example</watcher></class></classtable>'


class Connection:
    """One side of a PRIM connection to the adapter, driven by hand."""

    def __init__(self, adapter: PrimAdapter, role: str) -> None:
        self.session = Session(adapter, role)
        self.protocol = adapter.make_protocol(self.session)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.ids = 0

    def send(self, method: str, headers=(), body: bytes = b"", request_id: str | None = None):  # type: ignore[no-untyped-def]
        self.ids += 1
        request = Request(method, request_id or str(self.ids), tuple(headers), body)
        self.protocol.dataReceived(request.to_bytes())
        return request

    def read(self) -> list:
        items = Parser().feed(self.transport.value())
        self.transport.clear()
        return items

    def close(self) -> None:
        if not self.protocol.closed or self.transport.disconnecting:
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def answer(self, request: Request, code: int) -> None:
        self.protocol.dataReceived(wire.Response(request.request_id, code).to_bytes())


class PrimFixture(BusFixture):
    """A bus with the PRIM adapter (prim.example, users alice and bob, peer.example) and alpha/beta."""

    def setUp(self):  # type: ignore[no-untyped-def]
        result = super().setUp()
        self.settings = PrimSettings.from_mapping({
            "local_domains": ["prim.example"],
            "users": {"alice": "wonder", "bob": "builder"},
            "peers": {"peer.example": {"host": "127.0.0.1", "port": 5999, "secret": "s3cret"}},
            "s2s_require_tls": False,
        })
        self.adapter = PrimAdapter(self.settings, self.bus, listen_ports={})
        self.adapter.bus = self.bus
        self.bus.register(self.adapter)
        self.adapter.startService()
        self.addCleanup(self.adapter.stopService)
        return result

    def connect(self, role: str) -> Connection:
        conn = Connection(self.adapter, role)
        self.addCleanup(conn.close)
        return conn

    def login(self, user: str = "alice", secret: str | None = None) -> Connection:
        conn = self.connect("client")
        frm = [("From", f"pres:{user}@prim.example")]
        conn.send("LOGIN", frm + [("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5,PLAIN")])
        (challenge,) = conn.read()
        self.assertEqual((challenge.code, challenge.header("SASL-Mech")), (100, "CRAM-MD5"))
        body = sasl.cram_md5_response(f"{user}@prim.example", secret or self.settings.users[user], challenge.body)
        conn.send("LOGIN", frm + [("Auth-State", "continue"), ("SASL-Mech", "CRAM-MD5"), ("Content-Type", "text/plain")], body)
        (done,) = conn.read()
        self.assertEqual(done.code, 200, done)
        self.assertTrue(done.header("User-Agent-ID"))
        return conn

class AdapterTests(PrimFixture, TestCase):
    def test_interfaces(self) -> None:
        verifyObject(IAdapter, self.adapter)
        self.assertTrue(IMessaging.providedBy(self.adapter) and IPresence.providedBy(self.adapter))
        self.assertEqual(self.adapter.domains, ("prim.example", "peer.example"))
        # No tls_ca: a peer certificate is never taken as proof of a domain.
        self.assertFalse(self.adapter.verifies_peers())

    def test_requests_before_login_are_401(self) -> None:
        conn = self.connect("client")
        conn.send("SEND", [("From", "im:alice@prim.example"), ("To", "im:x@beta.example")])
        self.assertEqual([r.code for r in conn.read()], [401])

    def test_login_twice_is_409_and_wrong_secret_406(self) -> None:
        conn = self.login()
        conn.send("LOGIN", [("From", "pres:alice@prim.example"), ("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5")])
        self.assertEqual([r.code for r in conn.read()], [409])
        bad = self.connect("client")
        bad.send("LOGIN", [("From", "pres:alice@prim.example"), ("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5")])
        (challenge,) = bad.read()
        bad.send("LOGIN", [("From", "pres:alice@prim.example"), ("Auth-State", "continue"), ("SASL-Mech", "CRAM-MD5"),
                           ("Content-Type", "text/plain")], sasl.cram_md5_response("alice@prim.example", "guess", challenge.body))
        self.assertEqual([r.code for r in bad.read()], [406])
        self.assertTrue(bad.transport.disconnecting)

    def test_plain_refused_without_tls(self) -> None:
        conn = self.connect("client")
        conn.send("LOGIN", [("From", "pres:alice@prim.example"), ("Auth-State", "init"), ("SASL-Mech", "PLAIN")])
        self.assertEqual([r.code for r in conn.read()], [406])

    def test_login_timeout(self) -> None:
        conn = self.connect("client")
        self.reactor.advance(self.settings.login_timeout)
        self.assertTrue(conn.transport.disconnecting)

    def test_from_must_be_the_principal(self) -> None:
        conn = self.login()
        conn.send("SEND", [("From", "im:bob@prim.example"), ("To", "im:x@beta.example"), ("Content-Type", "text/plain")], b"x")
        self.assertEqual([r.code for r in conn.read()], [402])

    def test_send_to_another_network(self) -> None:
        conn = self.login()
        conn.send("SEND", [("From", "im:alice@prim.example"), ("To", "im:romeo@beta.example"), ("Message-ID", "m1"),
                           ("Conversation-ID", "c1"), ("Content-Type", "text/plain")], b"hi romeo")
        settle(self.bus)
        (response,) = conn.read()
        self.assertEqual((response.code, response.header("Message-ID")), (200, "m1"))
        (message,) = self.beta.of_type(Message)
        self.assertEqual((message.source, message.destination, message.message_id),
                         (im_uri("alice", "prim.example"), im_uri("romeo", "beta.example"), "m1"))
        self.assertEqual(message.source_instance, conn.session.ua_id)
        self.assertIn(b"PRIM.Message-ID: m1", message.content.body)

    def test_send_failure_maps_to_prim(self) -> None:
        self.beta.reply = lambda op: failure(op, Condition.UNAVAILABLE, "offline")
        conn = self.login()
        conn.send("SEND", [("From", "im:alice@prim.example"), ("To", "im:romeo@beta.example"), ("Content-Type", "text/plain")], b"x")
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [408])

    def test_message_to_listening_user_agents(self) -> None:
        first, second = self.login(), self.login()
        first.send("LISTEN", [("From", "im:alice@prim.example")])
        second.send("LISTEN", [("From", "im:alice@prim.example")])
        first.read(), second.read()
        body = b"From: <im:romeo@alpha.example>\r\nTo: <im:alice@prim.example>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"
        d = self.alpha.inject(Message(im_uri("romeo", "alpha.example"), im_uri("alice", "prim.example"),
                                      Content("message/cpim", body), message_id="r1"))
        settle(self.bus)
        (one,), (two,) = first.read(), second.read()
        self.assertEqual((one.method, one.body, one.header("Content-Type"), one.header("Message-ID")),
                         ("SEND", body, "message/cpim", "r1"))
        first.answer(one, 408)
        self.assertNoResult(d)
        second.answer(two, 200)  # the most positive answer wins
        settle(self.bus)
        self.assertIs(self.successResultOf(d).status, Status.SUCCESS)

    def test_closed_inbox(self) -> None:
        self.login()
        d = self.alpha.inject(Message(im_uri("romeo", "alpha.example"), im_uri("alice", "prim.example"),
                                      Content("text/plain", b"hi")))
        settle(self.bus)
        response = self.successResultOf(d)
        self.assertEqual((response.status, response.condition, response.native_code),
                         (Status.FAILURE, Condition.UNAVAILABLE, 408))

    def test_silence_when_not_listening(self) -> None:
        conn = self.login()
        conn.send("SILENCE", [("From", "im:alice@prim.example")])
        self.assertEqual([r.code for r in conn.read()], [408])

    def test_inbox_acl(self) -> None:
        conn = self.login()
        conn.send("LISTEN", [("From", "im:alice@prim.example")])
        conn.send("SETACL", [("From", "pres:alice@prim.example"), ("Content-Type", "text/xml")],
                  b"<ACL><entry><target><address>@alpha.example</address></target><allow/></entry></ACL>")
        self.assertEqual([r.code for r in conn.read()], [200, 200])
        d = self.alpha.inject(Message(im_uri("romeo", "alpha.example"), im_uri("alice", "prim.example"),
                                      Content("text/plain", b"hi")))
        settle(self.bus)
        self.assertEqual(self.successResultOf(d).condition, Condition.FORBIDDEN)
        conn.send("GETACL", [("From", "pres:alice@prim.example")])
        (got,) = conn.read()
        self.assertIn(b"<address>@alpha.example</address>", got.body)

    def test_lease_model(self) -> None:
        conn = self.login()
        permanent = simple_pidf("pres:alice@prim.example", "closed", tuple_id="t1")
        leased = simple_pidf("pres:alice@prim.example", "open", tuple_id="t1")
        base = [("From", "pres:alice@prim.example"), ("Tuple-ID", "t1")]
        conn.send("PUBLISH", base + [("PI-Type", "permanent"), ("Content-Type", "application/pidf+xml")], permanent)
        conn.send("PUBLISH", base + [("PI-Type", "leased"), ("Duration", "60"), ("Content-Type", "application/pidf+xml")], leased)
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200, 200])
        stored = self.successResultOf(self.store.get_presence(pres_uri("alice", "prim.example")))
        self.assertEqual(stored["prim"].body, leased)
        conn.send("PUBLISH", base + [("PI-Type", "renew"), ("Duration", "60")])
        self.reactor.advance(59)
        conn.read()
        self.reactor.advance(60)  # the renewed lease expires: back to the permanent value
        settle(self.bus)
        stored = self.successResultOf(self.store.get_presence(pres_uri("alice", "prim.example")))
        self.assertEqual(stored["prim"].body, permanent)
        conn.send("REMOVE", base)
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200])
        self.assertEqual(self.successResultOf(self.store.get_presence(pres_uri("alice", "prim.example"))), {})
        conn.send("REMOVE", base)
        self.assertEqual([r.code for r in conn.read()], [403])

    def test_legacy_presence_published_as_pidf(self) -> None:
        conn = self.login()
        legacy = (b'<presence identifier="pres:alice@prim.example" date="Thu, 5 Sep 2000 15:45:45 -0500">'
                  b'<contact address="im:alice@prim.example"><display-name>IM</display-name>'
                  b'<status value="open"/><preference value="0"/></contact></presence>')
        conn.send("PUBLISH", [("From", "pres:alice@prim.example"), ("Tuple-ID", "im"), ("PI-Type", "permanent"),
                              ("Content-Type", "application/presence")], legacy)
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200])
        stored = self.successResultOf(self.store.get_presence(pres_uri("alice", "prim.example")))["prim"]
        self.assertEqual(stored.media_type, "application/pidf+xml")
        self.assertIn(b'<contact priority="1">im:alice@prim.example</contact>', stored.body)
        self.assertIn(b"<basic>open</basic>", stored.body)

    def test_signed_publish_is_relayed_octet_for_octet(self) -> None:
        """RFC 3863 §4: a multipart/signed PIDF of the publisher is accepted and reaches the bus unchanged."""
        conn = self.login()
        pidf = simple_pidf("pres:alice@prim.example", "open", tuple_id="signed")
        ctype = 'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="s1"'
        body = (b"--s1\r\nContent-Type: application/pidf+xml\r\n\r\n" + pidf + b"\r\n--s1\r\n"
                b"Content-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n--s1--\r\n")
        conn.send("PUBLISH", [("From", "pres:alice@prim.example"), ("Tuple-ID", "signed"), ("Content-Type", ctype)],
                  body)
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200])
        stored = self.successResultOf(self.store.get_presence(pres_uri("alice", "prim.example")))["prim"]
        self.assertEqual((stored.media_type, stored.body), ("multipart/signed", body))
        self.assertIn(("boundary", '"s1"'), stored.parameters)
        # A second tuple: a signature cannot cover a composition; the signed PIDF joins it unsigned.
        other = simple_pidf("pres:alice@prim.example", "closed", tuple_id="other")
        conn.send("PUBLISH", [("From", "pres:alice@prim.example"), ("Tuple-ID", "other"),
                              ("Content-Type", "application/pidf+xml")], other)
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200])
        self.assertEqual(self.adapter._document_for(("alice", "prim.example"), None),
                         Content(MEDIA_PIDF, compose_tuples("pres:alice@prim.example", [pidf, other])))
        # Signed for somebody else, or not a PIDF inside: 400.
        for inner in (simple_pidf("pres:mallory@prim.example", "open", tuple_id="x"), b"hello"):
            forged = body.replace(pidf, inner)
            conn.send("PUBLISH", [("From", "pres:alice@prim.example"), ("Tuple-ID", "forged"),
                                  ("Content-Type", ctype)], forged)
            settle(self.bus)
            self.assertEqual([r.code for r in conn.read()], [400])

    def test_polite_blocking(self) -> None:
        conn = self.login()
        conn.send("SETCLASSTABLE", [("From", "pres:alice@prim.example"), ("Content-Type", "text/xml")], CLASS_TABLE)
        public = simple_pidf("pres:alice@prim.example", "closed", tuple_id="public")
        private = simple_pidf("pres:alice@prim.example", "open", tuple_id="private", note="for friends")
        conn.send("PUBLISH", [("From", "pres:alice@prim.example"), ("Tuple-ID", "public"),
                              ("Content-Type", "application/pidf+xml")], public)
        conn.send("PUBLISH", [("From", "pres:alice@prim.example"), ("Tuple-ID", "private"), ("Class", "friends"),
                              ("Content-Type", "application/pidf+xml")], private)
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200, 200, 200])
        stored = self.successResultOf(self.store.get_presence(pres_uri("alice", "prim.example")))
        self.assertEqual(stored["prim"].body, public)  # other networks see the public part only
        self.assertEqual(self.adapter._document_for(("alice", "prim.example"), "bff@alpha.example"),
                         Content(MEDIA_PIDF, compose_tuples("pres:alice@prim.example", [public, private])))
        self.assertEqual(self.adapter._document_for(("alice", "prim.example"), "stranger@alpha.example"),
                         Content(MEDIA_PIDF, public))

    def test_subscribe_from_user_agent_and_notify_back(self) -> None:
        conn = self.login()
        conn.send("SUBSCRIBE", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example"),
                                ("Duration", "600"), ("Subscription-ID", "s1")])
        settle(self.bus)
        received = conn.read()
        (response,) = [r for r in received if isinstance(r, wire.Response)]
        self.assertEqual((response.code, response.header("Subscription-ID")), (200, "s1"))
        # RFC 3859: at once a first notify with the current state -- romeo published nothing yet.
        (first,) = [r for r in received if isinstance(r, Request) and r.method == "NOTIFY"]
        self.assertEqual((first.header("Subscription-ID"), first.body),
                         ("s1", empty_pidf(pres_uri("romeo", "alpha.example")).body))
        (forwarded,) = self.alpha.of_type(Subscribe)
        self.assertEqual((forwarded.watcher, forwarded.subscript_id), (pres_uri("alice", "prim.example"), "s1"))
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", pidf)))
        settle(self.bus)
        notifies = [r for r in conn.read() if r.method == "NOTIFY"]
        self.assertEqual(notifies[-1].body, pidf)
        self.assertEqual(notifies[-1].header("Subscription-ID"), "s1")
        conn.send("UNSUBSCRIBE", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example")])
        settle(self.bus)
        self.assertIn(200, [r.code for r in conn.read() if isinstance(r, wire.Response)])
        conn.send("UNSUBSCRIBE", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example")])
        self.assertEqual([r.code for r in conn.read() if isinstance(r, wire.Response)], [404])

    def test_duration_adjusted(self) -> None:
        conn = self.login()
        conn.send("SUBSCRIBE", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example"),
                                ("Duration", "9999999"), ("Subscription-ID", "s2")])
        settle(self.bus)
        (response,) = [r for r in conn.read() if isinstance(r, wire.Response)]
        self.assertEqual((response.code, response.header("Duration")), (201, str(self.bus.presence.max_duration)))

    def test_fetch(self) -> None:
        conn = self.login()
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", pidf)))
        conn.send("FETCH", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example")])
        settle(self.bus)
        items = conn.read()
        self.assertEqual([r.code for r in items if isinstance(r, wire.Response)], [200])
        (notify,) = [r for r in items if isinstance(r, Request)]
        self.assertEqual((notify.method, notify.body, notify.header("Duration")), ("NOTIFY", pidf, "0"))
        (forwarded,) = self.alpha.of_type(Subscribe)
        self.assertEqual(forwarded.duration, 0)

    def test_subscription_to_local_user_with_watcher_notify(self) -> None:
        conn = self.login()
        conn.send("STARTWATCHERNOTIFY", [("From", "pres:alice@prim.example")])
        settle(self.bus)
        (listing,) = conn.read()
        self.assertEqual(listing.code, 200)
        self.assertIn(b"<SUBSCRIBERS", listing.body)
        d = self.alpha.inject(Subscribe(pres_uri("romeo", "alpha.example"), pres_uri("alice", "prim.example"), 300))
        settle(self.bus)
        self.assertIs(self.successResultOf(d).status, Status.SUCCESS)
        (note,) = [r for r in conn.read() if r.method == "WATCHERNOTIFY"]
        self.assertEqual((note.request_id, note.header("From"), note.header("Watcher-Type")),
                         ("-", "pres:romeo@alpha.example", "subscribe"))

    def test_presence_acl_refuses_subscribe(self) -> None:
        conn = self.login()
        conn.send("SETACL", [("From", "pres:alice@prim.example"), ("Content-Type", "text/xml")],
                  b"<ACL><entry><target><address>.</address></target><allow><fetch/></allow></entry></ACL>")
        d = self.alpha.inject(Subscribe(pres_uri("romeo", "alpha.example"), pres_uri("alice", "prim.example"), 300))
        settle(self.bus)
        self.assertEqual(self.successResultOf(d).condition, Condition.FORBIDDEN)

    def test_server_login_and_peer_authorisation(self) -> None:
        conn = self.connect("server")
        conn.send("LOGIN", [("Domain", "peer.example"), ("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5,PLAIN")])
        (challenge,) = conn.read()
        self.assertEqual(challenge.code, 100)
        conn.send("LOGIN", [("Domain", "peer.example"), ("Auth-State", "continue"), ("SASL-Mech", "CRAM-MD5"),
                            ("Content-Type", "text/plain")], sasl.cram_md5_response("peer.example", "s3cret", challenge.body))
        self.assertEqual([r.code for r in conn.read()], [200])
        self.assertEqual(conn.session.link_strength, "weak")
        conn.send("SEND", [("From", "im:bob@prim.example"), ("To", "im:alice@prim.example"), ("Message-ID", "x"),
                           ("Content-Type", "text/plain")], b"claims to be one of our own users")
        self.assertEqual([r.code for r in conn.read()], [402])
        conn.send("SEND", [("From", "im:mallory@alpha.example"), ("To", "im:alice@prim.example"), ("Message-ID", "x"),
                           ("Content-Type", "text/plain")], b"spoof")
        self.assertEqual([r.code for r in conn.read()], [402])
        conn.send("SEND", [("From", "im:joe@peer.example"), ("To", "im:nobody@elsewhere.example"),
                           ("Content-Type", "text/plain")], b"relay?")
        self.assertEqual([r.code for r in conn.read()], [403])
        conn.send("SEND", [("From", "im:joe@peer.example"), ("To", "im:joe@peer.example"),
                           ("Content-Type", "text/plain")], b"loop back to your own domain?")
        self.assertEqual([r.code for r in conn.read()], [403])
        conn.send("SEND", [("From", "im:joe@peer.example"), ("To", "im:romeo@beta.example"), ("Message-ID", "j0"),
                           ("Content-Type", "text/plain")], b"to another network through us")
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [200])
        self.assertEqual(self.beta.of_type(Message)[0].message_id, "j0")
        conn.send("SEND", [("From", "im:joe@peer.example"), ("To", "im:alice@prim.example"), ("Message-ID", "j1"),
                           ("Content-Type", "text/plain")], b"hi")
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [408])  # alice is not listening
        conn.send("PUBLISH", [("From", "pres:joe@peer.example")])
        self.assertEqual([r.code for r in conn.read()], [501])  # control commands are client-server only

    def test_min_astrength(self) -> None:
        self.adapter.settings = PrimSettings.from_mapping({**_plain(self.settings), "min_astrength": "medium"})
        conn = self.login()
        conn.send("SEND", [("From", "im:alice@prim.example"), ("To", "im:x@beta.example"), ("Content-Type", "text/plain")], b"x")
        self.assertEqual([r.code for r in conn.read()], [410])

    def test_deliver_unsupported(self) -> None:
        response = self.successResultOf(self.adapter.deliver(Publish(pres_uri("a", "prim.example"), Content("text/plain", b""))))
        self.assertEqual(response.condition, Condition.UNSUPPORTED)


def _plain(settings: PrimSettings) -> dict:
    return {"local_domains": list(settings.local_domains), "users": dict(settings.users), "s2s_require_tls": False}


class SettingsTests(TestCase):
    def test_defaults(self) -> None:
        settings = PrimSettings.from_mapping({})
        self.assertEqual((settings.local_domains, settings.listen_host, settings.s2s_port, settings.c2s_port),
                         (("prim.localhost",), "127.0.0.1", 5780, 5781))

    def test_errors_name_the_key(self) -> None:
        for bad, key in (({"s2s_port": 70000}, "s2s_port"), ({"colour": 1}, "colour"),
                         ({"sasl_mechanisms": ["GSSAPI"]}, "sasl_mechanisms"), ({"tls_certificate": "x"}, "tls_key"),
                         ({"peers": {"p.example": {"hots": "x"}}}, "peers.p.example")):
            error = self.assertRaises(ConfigError, PrimSettings.from_mapping, bad)
            self.assertEqual(error.key, f"adapters.prim.{key}")


class SecondPassTests(PrimFixture, TestCase):
    """Settings and behaviour added in the second pass (limits, AStrength from other networks, -01 FETCH)."""

    def test_max_pending_is_a_setting(self) -> None:
        self.adapter.settings = PrimSettings.from_mapping({**_plain(self.settings), "max_pending": 2})
        self.beta.reply = lambda op: Deferred()  # beta never answers: the SENDs stay pending
        conn = self.login("bob")
        self.assertEqual(conn.protocol.max_pending, 2)
        for n in range(3):
            conn.send("SEND", [("From", "im:bob@prim.example"), ("To", f"im:r{n}@beta.example"),
                               ("Content-Type", "text/plain")], b"x")
        settle(self.bus)
        (refused,) = conn.read()
        self.assertEqual((refused.request_id, refused.code), ("5", 500))  # the third SEND (after LOGIN 1, 2)
        self.assertIn("more than 2 requests pending", refused.reason)

    def test_connections_per_ip_capped(self) -> None:
        from twisted.internet.address import IPv4Address

        from cpimgw.adapters.prim.adapter import _SessionFactory

        self.adapter.settings = PrimSettings.from_mapping({**_plain(self.settings), "max_connections_per_ip": 2})
        factory = _SessionFactory(self.adapter, "client")
        built = []
        for port in range(3):
            protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4000 + port))
            if protocol is not None:
                protocol.makeConnection(StringTransport())
                self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
            built.append(protocol)
        self.assertIsNone(built[2])
        self.assertEqual(self.adapter.counters["connections_refused"], 1)
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.2", 4000)))  # another address
        built[0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4009)))  # a place is free again

    def test_idle_connection_closed(self) -> None:
        self.adapter.settings = PrimSettings.from_mapping({**_plain(self.settings), "idle_timeout": 100})
        conn = self.login()
        self.reactor.advance(99)
        conn.send("PING", request_id="-")  # anything received keeps it open
        self.reactor.advance(99)
        self.assertFalse(conn.transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(conn.transport.disconnecting)
        (logout,) = conn.read()
        self.assertEqual((logout.method, logout.request_id), ("LOGOUT", "-"))

    def test_idle_timer_waits_for_pending_work(self) -> None:
        self.adapter.settings = PrimSettings.from_mapping({**_plain(self.settings), "idle_timeout": 100})
        pending: Deferred = Deferred()
        self.beta.reply = lambda op: pending
        conn = self.login()
        conn.send("SEND", [("From", "im:alice@prim.example"), ("To", "im:r@beta.example"),
                           ("Content-Type", "text/plain")], b"x")
        settle(self.bus)
        self.reactor.advance(150)
        self.assertFalse(conn.transport.disconnecting)  # an answer is still being worked out
        pending.callback(failure(self.beta.delivered[0], Condition.UNAVAILABLE, "offline"))
        settle(self.bus)
        self.assertEqual([r.code for r in conn.read()], [408])
        self.reactor.advance(100)
        self.assertTrue(conn.transport.disconnecting)

    def test_settings_errors(self) -> None:
        for bad, key in (({"max_pending": 0}, "max_pending"), ({"idle_timeout": -1}, "idle_timeout"),
                         ({"max_connections_per_ip": True}, "max_connections_per_ip"),
                         ({"astrength_by_origin": {"xmpp": "great"}}, "astrength_by_origin"),
                         ({"server_addresses": "10.0.0.1"}, "server_addresses")):
            error = self.assertRaises(ConfigError, PrimSettings.from_mapping, bad)
            self.assertEqual(error.key, f"adapters.prim.{key}")

    def test_astrength_of_operations_from_other_networks(self) -> None:
        self.adapter.settings = PrimSettings.from_mapping({
            **_plain(self.settings), "astrength_by_origin": {"alpha": "medium", "beta": "none"}})
        headers = {}
        for origin in ("alpha", "beta", "gamma"):
            message = Message(im_uri("romeo", f"{origin}.example"), im_uri("joe", "peer.example"),
                              Content("text/plain", b"hi"), origin=origin)
            headers[origin] = dict(self.adapter._send_headers(message)[0]).get("AStrength")
        # "none" is the header's absence (server-00 §6.1.8)
        self.assertEqual(headers, {"alpha": "medium", "beta": None, "gamma": None})
        # a PRIM request keeps the strength of its own path, whatever the table says
        message = Message(im_uri("alice", "prim.example"), im_uri("joe", "peer.example"),
                          Content("text/plain", b"hi"), origin="prim")
        self.adapter._strengths[message.trans_id] = "weak"
        self.assertEqual(dict(self.adapter._send_headers(message)[0])["AStrength"], "weak")

    def legacy_login(self) -> Connection:
        conn = self.connect("client")
        frm = [("From", "pres:alice@prim.example")]
        conn.protocol.dataReceived(Request("LOGIN", "1", tuple(frm + [("Auth-State", "init"), ("SASL-Mech", "CRAM-MD5")]),
                                           b"", "PP/1.0").to_bytes())
        (challenge,) = conn.read()
        body = sasl.cram_md5_response("alice@prim.example", "wonder", challenge.body)
        conn.protocol.dataReceived(Request("LOGIN", "2", tuple(frm + [("Auth-State", "continue"), ("SASL-Mech", "CRAM-MD5"),
                                                                    ("Content-Type", "text/plain")]), body, "PP/1.0").to_bytes())
        (done,) = conn.read()
        self.assertEqual((done.code, done.version), (200, "PP/1.0"))
        return conn

    def test_legacy_fetch_answers_with_the_presence(self) -> None:
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", pidf)))
        conn = self.legacy_login()
        conn.protocol.dataReceived(Request("FETCH", "3", (("From", "pres:alice@prim.example"),
                                                          ("To", "pres:romeo@alpha.example")), b"", "PP/1.0").to_bytes())
        settle(self.bus)
        (answer,) = conn.read()  # -01 §11.1.3: 200 with the presence, and no NOTIFY after it
        # -01 §15: in the legacy application/presence form, not PIDF
        self.assertEqual((answer.request_id, answer.code, answer.header("MIME-Version")), ("3", 200, "1.0"))
        self.assertEqual(presence_doc.parse_legacy(answer.header("Content-Type"), answer.body), [
            presence_doc.LegacyTuple("prim", "pres:romeo@alpha.example", None,
                                     (presence_doc.LegacyContact(None, "open"),))])
        self.assertEqual(self.adapter._absorb, {})

    def test_legacy_subscribe_answers_with_the_presence_then_notifies(self) -> None:
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", pidf)))
        conn = self.legacy_login()
        conn.protocol.dataReceived(Request("SUBSCRIBE", "3", (
            ("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example"), ("Duration", "600"),
            ("Subscription-ID", "s9")), b"", "PP/1.0").to_bytes())
        settle(self.bus)
        (answer,) = conn.read()
        self.assertEqual((answer.code, answer.header("Subscription-ID")), (200, "s9"))
        self.assertEqual((answer.header("Content-Type"), answer.body), presence_doc.pidf_to_legacy(pidf))
        closed = simple_pidf("pres:romeo@alpha.example", "closed", contact="im:romeo@alpha.example",
                             note="asleep")
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", closed)))
        settle(self.bus)
        (notify,) = conn.read()
        self.assertEqual((notify.method, notify.version, notify.header("Duration")), ("NOTIFY", "PP/1.0", None))
        self.assertTrue(notify.header("Content-Type").startswith("multipart/mixed; boundary="))
        self.assertEqual(presence_doc.parse_legacy(notify.header("Content-Type"), notify.body), [
            presence_doc.LegacyTuple("prim", "pres:romeo@alpha.example", None, (
                presence_doc.LegacyContact("im:romeo@alpha.example", "closed", note="asleep"),))])

    def test_legacy_user_agent_gets_a_signed_pidf_as_is(self) -> None:
        """RFC 3863 §4: a signature covers the PIDF octets, so a signed document is never converted."""
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        body = (b"--s1\r\nContent-Type: application/pidf+xml\r\n\r\n" + pidf + b"\r\n--s1\r\n"
                b"Content-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n--s1--\r\n")
        signed = Content("multipart/signed", body, (("protocol", '"application/pkcs7-signature"'),
                                                    ("boundary", '"s1"')))
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), signed))
        conn = self.legacy_login()
        conn.protocol.dataReceived(Request("FETCH", "3", (("From", "pres:alice@prim.example"),
                                                          ("To", "pres:romeo@alpha.example")), b"", "PP/1.0").to_bytes())
        settle(self.bus)
        (answer,) = conn.read()
        self.assertEqual((answer.code, answer.header("Content-Type"), answer.body),
                         (200, signed.content_type, body))

    def test_server_00_user_agent_still_gets_pidf(self) -> None:
        pidf = simple_pidf("pres:romeo@alpha.example", "open")
        self.alpha.inject(Publish(pres_uri("romeo", "alpha.example"), Content("application/pidf+xml", pidf)))
        conn = self.login()
        conn.send("SUBSCRIBE", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example"),
                                ("Duration", "600"), ("Subscription-ID", "s3")])
        settle(self.bus)
        (notify,) = [r for r in conn.read() if isinstance(r, Request)]
        self.assertEqual((notify.method, notify.version, notify.header("Content-Type"), notify.body),
                         ("NOTIFY", "PRIM/1.0", "application/pidf+xml", pidf))

    def test_server_00_fetch_still_notifies(self) -> None:
        conn = self.login()
        conn.send("FETCH", [("From", "pres:alice@prim.example"), ("To", "pres:romeo@alpha.example")])
        settle(self.bus)
        (answer,) = [r for r in conn.read() if isinstance(r, wire.Response)]
        self.assertEqual((answer.code, answer.body), (200, b""))
