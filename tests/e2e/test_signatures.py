"""End-to-end signatures survive the gateway (RFC 3862 §5.2, RFC 5751, RFC 3923).

A sender on one network signs a Message/CPIM object with S/MIME
(``multipart/signed``, detached PKCS #7 made by ``cryptography``, signer
certificate with subjectAltName ``im:sender``) and sends it to a user on
each other network through the one twistd gateway of
:class:`~tests.e2e.world.ThreeNetworksTestCase`.  The receiver's octets are
unwrapped down to the ``multipart/signed`` (the gateway may wrap a foreign
body in a Message/CPIM object of its own, RFC 3862) and checked with
``openssl smime -verify`` against the test CA: the signature verifies, the
signed entity is byte for byte the one the sender signed, and the signer's
certificate names the Message/CPIM ``From``.

How each network carries the signed object here:

- SIP (RFC 3428): the MESSAGE body is the ``multipart/signed`` (outbound
  from the gateway: a ``message/cpim`` body wrapping it, byte for byte).
- PRIM: a SEND whose body is the ``multipart/signed`` (the gateway wraps it
  in Message/CPIM, -01 §17.2) or a ``message/cpim`` body wrapping it.
- XMPP: the standard carriage, RFC 3923's ``<e2e
  xmlns='urn:ietf:params:xml:ns:xmpp-e2e'/>``, both ways: inbound the
  entity's line ends, which XML turns into LF, are restored to canonical
  CRLF; outbound each CR is ``&#13;``.  A Message/CPIM object in the private
  ``<cpim xmlns='urn:x-cpimgw:xmpp'/>`` is read inbound; outbound it goes only
  to another cpimgw that advertises it (XEP-0030), never to Prosody's users.

Signed presence (a ``multipart/signed`` PIDF, RFC 3863 §4) crosses PRIM <-> SIP
(:class:`SignedPresenceTests`) and to and from XMPP in RFC 3923 §5 ``<e2e/>``
inside ``<presence/>`` (:class:`SignedPresenceXMPPTests`).
"""

from __future__ import annotations

import base64
import os
import re
from xml.sax.saxutils import escape

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from cpimgw.adapters.xmpp.e2e import split_content_type
from cpimgw.cpim.message import build_message, parse_message
from tests.e2e import sip_users
from tests.e2e.peers import free_udp_port, sip_body, sip_header, traced_requests, wait_until, xmpp_jid_of
from tests.e2e.smime import CRLF, Signer, cpim_entity, find_signed, pidf_entity, verify
from tests.e2e.world import WAIT, ThreeNetworksTestCase

ALICE = "im:alice@xmpp.localhost"
BOB = "im:bob@sip.localhost"
CAROL = "im:carol@prim.localhost"
NS_CARRY = "urn:x-cpimgw:xmpp"
NS_E2E = "urn:ietf:params:xml:ns:xmpp-e2e"


class SigningTestCase(ThreeNetworksTestCase):
    """The three networks, a signer (test CA + certificate) per user, and the send/receive/verify helpers."""

    def setUp(self):  # type: ignore[no-untyped-def]
        d = super().setUp()

        def signers(_: object) -> None:
            self.signers = {uri: Signer.create(uri) for uri in (ALICE, BOB, CAROL)}
            self.checks = 0

        return d.addCallback(signers)

    def signed(self, sender: str, recipient: str, text: str) -> tuple[bytes, str, bytes]:
        """(the signed entity, multipart/signed Content-Type, its body) from ``sender`` to ``recipient``."""
        entity = cpim_entity(sender, recipient, text)
        content_type, body = self.signers[sender].sign(entity)
        return entity, content_type, body

    @inlineCallbacks
    def check(self, sender: str, entity: bytes, content_type: str, body: bytes):  # type: ignore[no-untyped-def]
        """What the receiver got verifies against the sender's CA and is the very entity signed."""
        self.checks += 1
        workdir = os.path.join(self.dir, f"verify-{self.checks}")
        os.makedirs(workdir)
        signed_type, signed_body = find_signed(content_type, body)
        verified = yield verify(signed_type, signed_body, self.signers[sender].write(workdir), workdir)
        self.assertEqual(verified.content, entity)
        self.assertEqual(verified.signer_uris, (sender,))
        inner = parse_message(entity.partition(CRLF + CRLF)[2])
        self.assertEqual(str(inner.sender.uri), sender)

    # -- receivers ----------------------------------------------------------------------------------------------

    @inlineCallbacks
    def prim_received(self):  # type: ignore[no-untyped-def]
        send = yield self.carol.wait_for("SEND").addTimeout(WAIT, reactor)
        return send.header("Content-Type"), send.body

    @inlineCallbacks
    def xmpp_received(self):  # type: ignore[no-untyped-def]
        """What an ordinary XMPP client finds: the signed entity in RFC 3923 ``<e2e/>``; the private
        ``<cpim/>`` carriage goes only to a domain that advertises it (another cpimgw), never to Prosody."""
        received = yield self.e2e_received()
        self.assertNotIn(NS_CARRY, self.alice.stanzas[-1])
        return received

    @inlineCallbacks
    def e2e_received(self):  # type: ignore[no-untyped-def]
        """(Content-Type, body) of the RFC 3923 <e2e/> alice received, line ends made canonical again."""
        yield wait_until(lambda: self.alice.stanzas, WAIT, what="alice's message")
        match = re.search(r"<e2e xmlns=[\"']" + re.escape(NS_E2E) + r"[\"']>([^<]*)</e2e>", self.alice.stanzas[-1])
        self.assertIsNotNone(match, f"no RFC 3923 <e2e/> in {self.alice.stanzas[-1][:1500]}")
        from xml.sax.saxutils import unescape

        # slixmpp writes the text back with &quot; and &apos; too (slixmpp.xmlstream.tostring.escape).
        text = unescape(match.group(1), {"&quot;": '"', "&apos;": "'"})
        mime = text.encode("ascii").replace(b"\n", CRLF).replace(b"\r\r", b"\r")
        head, _, signed_body = mime.partition(CRLF + CRLF)
        return head.split(b":", 1)[1].strip().decode(), signed_body

    @inlineCallbacks
    def sip_received(self, uas, workdir: str):  # type: ignore[no-untyped-def]
        code, output = yield uas.ended
        self.assertEqual(code, 0, output[-2000:])
        [message] = traced_requests(workdir, "MESSAGE")
        return sip_header(message, "Content-Type"), sip_body(message)

    # -- senders ------------------------------------------------------------------------------------------------

    def prim_send(self, recipient: str, content_type: str, body: bytes):  # type: ignore[no-untyped-def]
        return self.carol.send(recipient, body, content_type).addTimeout(WAIT, reactor)

    @inlineCallbacks
    def sip_send_signed(self, recipient: str, content_type: str, body: bytes):  # type: ignore[no-untyped-def]
        # sipp writes each line of the scenario body with CRLF (and one after the last line).
        assert body.endswith(CRLF)
        text = body[:-2].decode("ascii").replace("\r\n", "\n")
        workdir = yield self.sip_send("bob@sip.localhost", recipient.split(":", 1)[1], text, content_type)
        [sent] = traced_requests(workdir, "MESSAGE")
        self.assertEqual(sip_body(sent), body, "sipp did not send the signed body as it is")

    def xmpp_send_signed(self, recipient_jid: str, content_type: str, body: bytes, recipient: str) -> None:
        """alice sends a Message/CPIM object (From: her) wrapping the multipart/signed, carried in <cpim/>."""
        wrapper = build_message(ALICE, [recipient], body, content_type).to_bytes()
        stanza = (f"<message to='{escape(recipient_jid)}' type='chat' id='signed-1'>"
                  f"<body>signed message</body>"
                  f"<cpim xmlns='{NS_CARRY}'>{base64.b64encode(wrapper).decode()}</cpim></message>")
        self.alice.call(self.alice.client.send_raw, stanza)



class SignatureTests(SigningTestCase):
    """A signed Message/CPIM from each network to each other network verifies at the receiver."""

    @inlineCallbacks
    def test_prim_to_xmpp(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(CAROL, ALICE, "signed by carol, for alice")
        answer = yield self.prim_send(ALICE, content_type, body)
        self.assertIn(answer.code, (200, 101))
        received = yield self.xmpp_received()
        yield self.check(CAROL, entity, *received)

    @inlineCallbacks
    def test_prim_to_sip(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob")
        entity, content_type, body = self.signed(CAROL, BOB, "signed by carol, for bob")
        answer = yield self.prim_send(BOB, content_type, body)
        self.assertEqual(answer.code, 200)
        received = yield self.sip_received(uas, workdir)
        yield self.check(CAROL, entity, *received)

    @inlineCallbacks
    def test_sip_to_xmpp(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(BOB, ALICE, "signed by bob, for alice")
        yield self.sip_send_signed(ALICE, content_type, body)
        received = yield self.xmpp_received()
        yield self.check(BOB, entity, *received)

    @inlineCallbacks
    def test_sip_to_prim(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(BOB, CAROL, "signed by bob, for carol")
        yield self.sip_send_signed(CAROL, content_type, body)
        received = yield self.prim_received()
        yield self.check(BOB, entity, *received)

    @inlineCallbacks
    def test_xmpp_to_sip(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob")
        entity, content_type, body = self.signed(ALICE, BOB, "signed by alice, for bob")
        self.xmpp_send_signed(xmpp_jid_of("bob", "sip.localhost"), content_type, body, BOB)
        received = yield self.sip_received(uas, workdir)
        yield self.check(ALICE, entity, *received)

    @inlineCallbacks
    def test_xmpp_to_prim(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(ALICE, CAROL, "signed by alice, for carol")
        self.xmpp_send_signed(xmpp_jid_of("carol", "prim.localhost"), content_type, body, CAROL)
        received = yield self.prim_received()
        yield self.check(ALICE, entity, *received)


class RFC3923Tests(SigningTestCase):
    """XMPP's standard carriage of a signed object, ``<e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'/>``
    (RFC 3923 §4, §8: the MIME entity -- Content-Type line, blank line, multipart/signed -- as the
    element's text)."""

    @inlineCallbacks
    def test_xmpp_e2e_to_prim(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(ALICE, CAROL, "signed by alice in <e2e/>, for carol")
        mime = b"Content-Type: " + content_type.encode() + CRLF + CRLF + body
        stanza = (f"<message to='{escape(xmpp_jid_of('carol', 'prim.localhost'))}' type='chat' id='e2e-1'>"
                  f"<e2e xmlns='{NS_E2E}'>{escape(mime.decode('ascii'))}</e2e></message>")
        self.alice.call(self.alice.client.send_raw, stanza)
        received = yield self.prim_received()
        yield self.check(ALICE, entity, *received)

    @inlineCallbacks
    def test_xmpp_e2e_to_sip(self):  # type: ignore[no-untyped-def]
        uas, workdir = yield self.sip_receiver("bob")
        entity, content_type, body = self.signed(ALICE, BOB, "signed by alice in <e2e/>, for bob")
        mime = b"Content-Type: " + content_type.encode() + CRLF + CRLF + body
        stanza = (f"<message to='{escape(xmpp_jid_of('bob', 'sip.localhost'))}' type='chat' id='e2e-2'>"
                  f"<e2e xmlns='{NS_E2E}'>{escape(mime.decode('ascii'))}</e2e></message>")
        self.alice.call(self.alice.client.send_raw, stanza)
        received = yield self.sip_received(uas, workdir)
        yield self.check(ALICE, entity, *received)

    @inlineCallbacks
    def test_sip_to_xmpp_as_e2e(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(BOB, ALICE, "signed by bob, for alice's <e2e/>")
        yield self.sip_send_signed(ALICE, content_type, body)
        yield self.check(BOB, entity, *(yield self.e2e_received()))

    @inlineCallbacks
    def test_prim_to_xmpp_as_e2e(self):  # type: ignore[no-untyped-def]
        entity, content_type, body = self.signed(CAROL, ALICE, "signed by carol, for alice's <e2e/>")
        answer = yield self.prim_send(ALICE, content_type, body)
        self.assertIn(answer.code, (200, 101))
        yield wait_until(lambda: self.alice.stanzas, WAIT, what="alice's message")
        match = re.search(r"<e2e xmlns=[\"']" + re.escape(NS_E2E) + r"[\"']>([^<]*)</e2e>", self.alice.stanzas[-1])
        self.assertIsNotNone(match, f"no RFC 3923 <e2e/> in {self.alice.stanzas[-1][:1500]}")
        from xml.sax.saxutils import unescape

        # slixmpp writes the text back with &quot; and &apos; too (slixmpp.xmlstream.tostring.escape).
        text = unescape(match.group(1), {"&quot;": '"', "&apos;": "'"})
        mime = text.encode("ascii").replace(b"\n", CRLF).replace(b"\r\r", b"\r")
        head, _, signed_body = mime.partition(CRLF + CRLF)
        yield self.check(CAROL, entity, head.split(b":", 1)[1].strip().decode(), signed_body)


class SignedPresenceTests(SigningTestCase):
    """A signed PIDF document (multipart/signed over application/pidf+xml) published on one network
    reaches a watcher on another as a notify whose signature verifies."""

    @inlineCallbacks
    def test_prim_publish_to_sip_watcher(self):  # type: ignore[no-untyped-def]
        note = "signed-presence"
        entity = pidf_entity("pres:carol@prim.localhost", "open", note)
        content_type, body = self.signers[CAROL].sign(entity)
        answer = yield self.carol.publish(body, tuple_id="signed", content_type=content_type).addTimeout(
            WAIT, reactor)
        self.assertEqual(answer.code, 200)
        # RFC 3856 §6.7 / RFC 3261 §8.2.3: a NOTIFY body is of a type the SUBSCRIBE's Accept lists; this
        # watcher takes signed documents (one that lists PIDF only gets the PIDF they sign).
        scenario = sip_users.subscribe_uac("dan@sip.localhost", "carol@prim.localhost").replace(
            "Accept: application/pidf+xml", "Accept: application/pidf+xml, multipart/signed")
        process, workdir = self.sipp(scenario, [self.gateway_sip, "-p", str(free_udp_port()), "-m", "1", "-t", "u1",
                                                "-timeout", "40s"], "watch-dan", timeout=45.0)

        def signed_notifies() -> list[bytes]:
            return [n for n in traced_requests(workdir, "NOTIFY") if b"pkcs7-signature" in sip_body(n)]

        yield wait_until(lambda: signed_notifies() or process.ended.called, WAIT, what="a signed NOTIFY")
        [notify, *_] = signed_notifies()
        yield process.stop()
        verified = yield self.verify_presence(sip_header(notify, "Content-Type"), sip_body(notify))
        self.assertEqual(verified.content, entity)

    @inlineCallbacks
    def test_sip_publish_to_prim_watcher(self):  # type: ignore[no-untyped-def]
        entity = pidf_entity("pres:bob@sip.localhost", "open", "signed-presence")
        content_type, body = self.signers[BOB].sign(entity)
        text = body[:-2].decode("ascii").replace("\r\n", "\n")
        scenario = sip_users.publish_uac("bob@sip.localhost", "open", "x").replace(
            "Content-Type: application/pidf+xml", f"Content-Type: {content_type}").replace(
            sip_users.pidf("sip:bob@sip.localhost", "open", "x"), text)
        # Directly to the gateway, the ESC for sip.localhost (RFC 3903): Kamailio's presence_xml takes PIDF only.
        yield self.sipp_ok(scenario, self.gateway_sip, "publish-signed")
        answer = yield self.carol.subscribe("pres:bob@sip.localhost", 600).addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 201))
        notify = yield self.carol.wait_for("NOTIFY", lambda r: b"pkcs7-signature" in r.body).addTimeout(WAIT, reactor)
        self.checks += 1
        workdir = os.path.join(self.dir, f"verify-{self.checks}")
        os.makedirs(workdir)
        verified = yield verify(notify.header("Content-Type"), notify.body, self.signers[BOB].write(workdir), workdir)
        self.assertEqual(verified.content, entity)

    @inlineCallbacks
    def verify_presence(self, content_type: str, body: bytes):  # type: ignore[no-untyped-def]
        self.checks += 1
        workdir = os.path.join(self.dir, f"verify-{self.checks}")
        os.makedirs(workdir)
        verified = yield verify(content_type, body, self.signers[CAROL].write(workdir), workdir)
        self.assertEqual(verified.signer_uris, (CAROL,))
        return verified


def e2e_entity(stanza_xml: str) -> tuple[str, bytes] | None:
    """(Content-Type, body) of the RFC 3923 ``<e2e/>`` in a received stanza, line ends made canonical again."""
    from xml.sax.saxutils import unescape

    match = re.search(r"<e2e xmlns=[\"']" + re.escape(NS_E2E) + r"[\"']>([^<]*)</e2e>", stanza_xml)
    if match is None:
        return None
    # slixmpp writes the text back with &quot; and &apos; too (slixmpp.xmlstream.tostring.escape).
    text = unescape(match.group(1), {"&quot;": '"', "&apos;": "'"})
    mime = text.encode("ascii").replace(b"\n", CRLF).replace(b"\r\r", b"\r")
    head, _, body = mime.partition(CRLF + CRLF)
    return head.split(b":", 1)[1].strip().decode(), body


class SignedPresenceXMPPTests(SigningTestCase):
    """RFC 3923 §5 signed presence to and from XMPP: a ``<presence/>`` whose ``<e2e/>`` holds the
    ``multipart/signed`` PIDF, relayed unchanged; every received entity is checked with openssl."""

    @inlineCallbacks
    def verify_signed(self, signer: str, content_type: str, body: bytes):  # type: ignore[no-untyped-def]
        self.checks += 1
        workdir = os.path.join(self.dir, f"verify-{self.checks}")
        os.makedirs(workdir)
        verified = yield verify(content_type, body, self.signers[signer].write(workdir), workdir)
        self.assertEqual(verified.signer_uris, (signer,))
        return verified

    @inlineCallbacks
    def test_prim_publish_to_xmpp_watcher(self):  # type: ignore[no-untyped-def]
        note = "signed-presence-for-xmpp"
        entity = pidf_entity("pres:carol@prim.localhost", "open", note)
        content_type, body = self.signers[CAROL].sign(entity)
        answer = yield self.carol.publish(body, tuple_id="signed", content_type=content_type).addTimeout(
            WAIT, reactor)
        self.assertEqual(answer.code, 200)
        carol = xmpp_jid_of("carol", "prim.localhost")
        self.alice.call(self.alice.client.send_presence, pto=carol, ptype="subscribe")

        def signed_presences() -> list[dict]:
            return [p for p in self.alice.presences
                    if p["from"].split("/")[0] == carol and e2e_entity(p["xml"]) is not None]

        yield wait_until(signed_presences, WAIT, what="a presence with <e2e/> from carol")
        [presence, *_] = signed_presences()
        # The ordinary fields come from the signed PIDF (RFC 3922 §5.2): an ordinary client sees carol.
        self.assertEqual((presence["type"], presence["status"]), ("available", note))
        self.assertEqual(presence["from"], carol + "/signed")
        received_type, received_body = e2e_entity(presence["xml"])
        self.assertEqual(received_body, body)
        verified = yield self.verify_signed(CAROL, received_type, received_body)
        self.assertEqual(verified.content, entity)

    @inlineCallbacks
    def test_xmpp_signed_presence_to_sip_and_prim_watchers(self):  # type: ignore[no-untyped-def]
        # dan (SIP, takes multipart/signed) and carol (PRIM) watch alice; alice (slixmpp) authorises both.
        scenario = sip_users.subscribe_uac("dan@sip.localhost", "alice@xmpp.localhost").replace(
            "Accept: application/pidf+xml", "Accept: application/pidf+xml, multipart/signed")
        process, workdir = self.sipp(scenario, [self.gateway_sip, "-p", str(free_udp_port()), "-m", "1", "-t", "u1",
                                                "-timeout", "40s"], "watch-dan", timeout=45.0)
        answer = yield self.carol.subscribe("pres:alice@xmpp.localhost", 600).addTimeout(WAIT, reactor)
        self.assertIn(answer.code, (200, 201))
        for watcher in (xmpp_jid_of("dan", "sip.localhost"), xmpp_jid_of("carol", "prim.localhost")):
            yield wait_until(lambda: self.alice.roster_subscription(watcher) in ("from", "both"), WAIT,
                             what=f"alice to authorise {watcher}")
        note = "signed-by-alice"
        entity = pidf_entity("pres:alice@xmpp.localhost", "open", note)
        content_type, body = self.signers[ALICE].sign(entity)
        mime = b"Content-Type: " + content_type.encode() + CRLF + CRLF + body
        # A broadcast presence (RFC 6121 §4.2.2): Prosody sends it to both subscribed gateway JIDs, and its
        # XML parser turns every CR LF of the entity into LF on the way (restored to CRLF by the gateway).
        self.alice.call(self.alice.client.send_raw,
                        f"<presence><show>away</show><status>{note}</status>"
                        f"<e2e xmlns='{NS_E2E}'>{escape(mime.decode('ascii'))}</e2e></presence>")

        def signed_notifies() -> list[bytes]:
            return [n for n in traced_requests(workdir, "NOTIFY") if b"pkcs7-signature" in sip_body(n)]

        yield wait_until(lambda: signed_notifies() or process.ended.called, WAIT, what="a signed NOTIFY to dan")
        self.assertTrue(signed_notifies(), process.protocol.output.decode("utf-8", "replace")[-2000:])
        [notify, *_] = signed_notifies()
        yield process.stop()
        # The same Content-Type (the SIP adapter writes its parameters without spaces, RFC 3261 §25.1 allows it).
        self.assertEqual(split_content_type(sip_header(notify, "Content-Type")), split_content_type(content_type))
        self.assertEqual(sip_body(notify), body)
        verified = yield self.verify_signed(ALICE, sip_header(notify, "Content-Type"), sip_body(notify))
        self.assertEqual(verified.content, entity)

        prim_notify = yield self.carol.wait_for(
            "NOTIFY", lambda r: b"pkcs7-signature" in r.body).addTimeout(WAIT, reactor)
        self.assertEqual(prim_notify.header("From"), "pres:alice@xmpp.localhost")
        self.assertEqual(prim_notify.body, body)
        verified = yield self.verify_signed(ALICE, prim_notify.header("Content-Type"), prim_notify.body)
        self.assertEqual(verified.content, entity)
