"""A presence from a bare JID (RFC 6121 §4.3.2: a server's answer to a probe) never leaves a bogus tuple.

RFC 3922 §5.1 / RFC 7248 §5 map XMPP presence to one PIDF tuple per
resource.  ``unavailable`` from the bare JID means no resource is
available: it closes the published resources' tuples; only when no resource
was ever published does it become an account-level closed tuple (``ID-``),
which the first resource's presence withdraws.  The composed document the
watchers get therefore starts with a real resource's tuple.
"""

from __future__ import annotations

from twisted.trial import unittest

from cpimgw.cpim.pidf import parse_pidf
from cpimgw.cpim.uri import parse_uri
from cpimgw.presence import compose_documents
from tests.adapters.xmpp.test_adapter import AdapterHarness

JULIET = parse_uri("pres:juliet@xmpp.example")
TO = "bob\\40sip.example@gw.xmpp.example"


class BarePresenceTests(AdapterHarness, unittest.TestCase):
    def presence(self, sender: str, kind: str | None = None, status: str | None = None) -> None:
        attribute = f" type='{kind}'" if kind else ""
        child = f"<status>{status}</status>" if status else ""
        self.feed(f"<presence from='{sender}' to='{TO}'{attribute}>{child}</presence>")

    def tuples(self) -> list[tuple[str, str, list[str]]]:
        """(id, basic, notes) of each tuple of juliet's composed document, in order."""
        documents = self.successResultOf(self.bus.store.get_presence(JULIET))
        composed = compose_documents(documents, JULIET)
        if composed is None:
            return []
        return [(t.id, t.status.basic, [n.text for n in t.notes]) for t in parse_pidf(composed.body).tuples]

    def instances(self) -> list[str]:
        return sorted(self.successResultOf(self.bus.store.get_presence(JULIET)))

    def test_probe_answer_then_a_resource(self) -> None:
        # Nothing published yet: the bare unavailable is the account's state (offline).
        self.presence("juliet@xmpp.example", "unavailable")
        self.assertEqual(self.tuples(), [("ID-", "closed", [])])
        # The first resource withdraws it: its tuple is the first (and only) one.
        self.presence("juliet@xmpp.example/balcony", status="here")
        self.assertEqual(self.tuples(), [("ID-balcony", "open", ["here"])])
        self.assertEqual(self.instances(), ["balcony"])

    def test_bare_unavailable_closes_each_available_resource(self) -> None:
        self.presence("juliet@xmpp.example/balcony", status="here")
        self.presence("juliet@xmpp.example/phone", status="on the move")
        self.presence("juliet@xmpp.example", "unavailable", status="gone to bed")
        self.assertEqual(self.tuples(), [("ID-balcony", "closed", ["gone to bed"]),
                                         ("ID-phone", "closed", ["gone to bed"])])
        self.assertEqual(self.instances(), ["balcony", "phone"])  # no account-level instance
        # The same available presence as before is published again (it is a change now).
        self.presence("juliet@xmpp.example/balcony", status="here")
        self.assertEqual(self.tuples()[0], ("ID-balcony", "open", ["here"]))

    def test_bare_unavailable_after_every_resource_closed_adds_nothing(self) -> None:
        self.presence("juliet@xmpp.example/balcony", status="here")
        self.presence("juliet@xmpp.example/balcony", "unavailable")
        self.presence("juliet@xmpp.example", "unavailable")
        self.assertEqual(self.tuples(), [("ID-balcony", "closed", [])])
        self.assertEqual(self.instances(), ["balcony"])
        self.assertEqual(self.adapter.bare_published, set())
