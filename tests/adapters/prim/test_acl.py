"""Tests of PRIM ACLs and class tables with the -01 §14.1.2 and §14.2.4 examples."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw.adapters.prim import acl

CLASS_TABLE = b"""<classtable>
  <class name="important_people">
    <watcher>wife@example.com</watcher>
    <watcher>@workdomain.com</watcher>
  </class>
  <class name="not_so_important_people">
    <watcher>friend@otherexample.com</watcher>
    <watcher>uncle@otherdomain.com</watcher>
    <watcher>slacker@workdomain.com</watcher>
  </class>
  <class name="everyone">
    <watcher>.</watcher>
  </class>
</classtable>"""

ACL = b"""<ACL>
  <entry>
    <target><address>secretary@mycompany.com</address></target>
    <allow><FETCH/><SUBSCRIBE/><PUBLISH/><REMOVE/></allow>
  </entry>
  <entry>
    <target><address>@mycompany.com</address><address>goodfriend@badguys.com</address></target>
    <allow><FETCH/><SUBSCRIBE/></allow>
  </entry>
  <entry>
    <target><address>@badguys.com</address></target>
    <allow></allow>
  </entry>
  <entry>
    <target><address>.</address></target>
    <allow><FETCH/></allow>
  </entry>
</ACL>"""


class ClassTableTests(TestCase):
    def test_example(self) -> None:
        table = acl.parse_class_table(CLASS_TABLE)
        self.assertEqual(table.names, ("important_people", "not_so_important_people", "everyone"))
        cases = {
            "wife@example.com": "important_people",
            "boss@workdomain.com": "important_people",
            "pres:Boss@WorkDomain.com": "important_people",
            "slacker@workdomain.com": "not_so_important_people",
            "uncle@otherdomain.com": "not_so_important_people",
            "stranger@elsewhere.org": "everyone",
        }
        for watcher, expected in cases.items():
            self.assertEqual(table.class_of(watcher), expected, watcher)

    def test_polite_blocking(self) -> None:
        table = acl.parse_class_table(CLASS_TABLE)
        self.assertTrue(table.visible("wife@example.com", ["important_people"]))
        self.assertFalse(table.visible("slacker@workdomain.com", ["important_people"]))
        self.assertTrue(table.visible("anyone@x.example", []))
        self.assertEqual(acl.ClassTable().class_of("x@y"), acl.DEFAULT_CLASS)

    def test_round_trip(self) -> None:
        self.assertEqual(acl.parse_class_table(CLASS_TABLE).to_xml(), CLASS_TABLE)
        rebuilt = acl.ClassTable({"a@b.example": "x"}, ("x",)).to_xml()
        self.assertEqual(acl.parse_class_table(rebuilt).class_of("a@b.example"), "x")

    def test_classes_header(self) -> None:
        self.assertEqual(acl.parse_classes("important_people everyone"), ("important_people", "everyone"))
        self.assertEqual(acl.parse_classes(None), ())


class AccessListTests(TestCase):
    def test_example(self) -> None:
        table = acl.parse_acl(ACL)
        everything = {"fetch", "subscribe", "publish", "remove"}
        self.assertEqual(table.permitted("secretary@mycompany.com"), everything)
        self.assertEqual(table.permitted("boss@mycompany.com"), {"fetch", "subscribe"})
        self.assertEqual(table.permitted("goodfriend@badguys.com"), {"fetch", "subscribe"})
        self.assertEqual(table.permitted("villain@badguys.com"), set())
        self.assertEqual(table.permitted("someone@else.org"), {"fetch"})
        self.assertTrue(table.allows("pres:someone@else.org", "FETCH"))
        self.assertFalse(table.allows("someone@else.org", "subscribe"))

    def test_default_deny(self) -> None:
        table = acl.parse_acl(b"<ACL><entry><target><address>a@b.example</address></target><allow><send/></allow></entry></ACL>")
        self.assertTrue(table.allows("a@b.example", "send"))
        self.assertFalse(table.allows("c@b.example", "send"))

    def test_round_trip(self) -> None:
        table = acl.parse_acl(ACL)
        self.assertEqual(acl.parse_acl(table.to_xml()), table)

    def test_bad(self) -> None:
        for body in (b"<ACL><entry><allow/></entry></ACL>", b"<acl><entry><target><address>x</address></target><allow><dance/></allow></entry></acl>",
                     b"<CLASSTABLE/>", b"<ACL", b'<!DOCTYPE ACL [<!ENTITY x "y">]><ACL/>'):
            self.assertRaises(acl.ParseError, acl.parse_acl, body)
        self.assertRaises(acl.ParseError, acl.parse_acl, b"<ACL><entry><target><address>x@y</address></target><allow><send/></allow></entry></ACL>",
                          acl.PRESENTITY_OPERATIONS)
