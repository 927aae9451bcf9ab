"""Tests for cpimgw.cpim.interworking: the one RFC 7247 §7 / digest §2.12 table, and that every adapter uses it."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cpimgw.cpim import interworking as iw
from cpimgw.cpim.operations import Condition, Status


class SharedTableTests(TestCase):
    def test_adapters_use_the_one_table(self) -> None:
        from cpimgw.adapters.prim import mapping as prim
        from cpimgw.adapters.sip import errors as sip
        from cpimgw.adapters.xmpp import errors as xmpp

        self.assertIs(sip.SIP_TO_XMPP, iw.SIP_TO_XMPP)
        self.assertIs(xmpp.SIP_TO_XMPP, iw.SIP_TO_XMPP)
        self.assertIs(sip.XMPP_TO_SIP, iw.XMPP_TO_SIP)
        self.assertIs(xmpp.XMPP_TO_SIP, iw.XMPP_TO_SIP)
        self.assertIs(xmpp.XMPP_TO_CONDITION, iw.XMPP_TO_CONDITION)
        self.assertIs(sip.CONDITION_TO_SIP, iw.CONDITION_TO_SIP)
        self.assertIs(prim.PRIM_TO_CPIM, iw.PRIM_TO_CPIM)
        self.assertIs(prim.CONDITION_TO_PRIM, iw.CONDITION_TO_PRIM)
        self.assertIs(prim.PRIM_TO_SIP, iw.PRIM_TO_SIP)
        self.assertIs(prim.PRIM_TO_XMPP, iw.PRIM_TO_XMPP)

    def test_every_condition_has_a_native_error_everywhere(self) -> None:
        self.assertEqual(set(iw.CONDITION_TO_SIP), set(Condition))
        self.assertEqual(set(iw.CONDITION_TO_XMPP), set(Condition))
        self.assertEqual(set(iw.CONDITION_TO_PRIM), set(Condition))

    def test_every_xmpp_word_is_known_to_every_table(self) -> None:
        words = set(iw.XMPP_TO_SIP)
        self.assertEqual(set(iw.XMPP_TO_CONDITION), words)
        self.assertEqual(set(iw.ERROR_TYPES), words)
        self.assertLessEqual(set(iw.SIP_TO_XMPP.values()) | set(iw.SIP_CLASS_DEFAULTS.values()), words)
        self.assertLessEqual(set(iw.CONDITION_TO_XMPP.values()), words)
        self.assertLessEqual({w for w in iw.PRIM_TO_XMPP.values() if w}, words)

    def test_a_condition_survives_xmpp(self) -> None:
        """Condition -> stanza error -> Condition, wherever XMPP has a word of its own for it."""
        coarser = {Condition.UNSUPPORTED_MEDIA: Condition.NOT_ACCEPTABLE, Condition.LOOP: Condition.NOT_ACCEPTABLE,
                   Condition.NO_SUBSCRIPTION: Condition.NOT_FOUND, Condition.SERVICE_UNAVAILABLE: Condition.FORBIDDEN}
        for condition in Condition:
            back = iw.condition_for_xmpp_condition(iw.CONDITION_TO_XMPP[condition])
            self.assertEqual(back, coarser.get(condition, condition), condition)

    def test_sip_status_to_condition_rows(self) -> None:
        table = {
            302: Condition.NO_ROUTE, 400: Condition.BAD_REQUEST, 401: Condition.NOT_AUTHORIZED,
            403: Condition.FORBIDDEN, 404: Condition.NOT_FOUND, 407: Condition.NOT_AUTHORIZED,
            408: Condition.TIMEOUT, 410: Condition.GONE, 413: Condition.TOO_LARGE, 415: Condition.UNSUPPORTED_MEDIA,
            480: Condition.UNAVAILABLE, 481: Condition.NO_SUBSCRIPTION, 482: Condition.LOOP, 483: Condition.LOOP,
            486: Condition.BUSY, 489: Condition.TOO_LARGE, 491: Condition.BAD_REQUEST, 499: Condition.BAD_REQUEST,
            501: Condition.UNSUPPORTED, 502: Condition.NO_ROUTE, 503: Condition.SERVICE_UNAVAILABLE,
            504: Condition.TIMEOUT, 599: Condition.INTERNAL, 603: Condition.UNAVAILABLE, 604: Condition.NOT_FOUND,
            606: Condition.NOT_ACCEPTABLE,
        }
        self.assertEqual({code: iw.condition_for_sip_status(code) for code in table}, table)
        self.assertRaises(ValueError, iw.condition_for_sip_status, 200)

    def test_sip_to_hub_to_xmpp_is_the_rfc7247_row(self) -> None:
        """A SIP failure reaching an XMPP user gives the §7.2 row of its exact code (native_code wins)."""
        for code, word in iw.SIP_TO_XMPP.items():
            condition = iw.condition_for_sip_status(code)
            self.assertEqual(iw.xmpp_error_for_condition(condition, code), (word, iw.ERROR_TYPES[word]), code)

    def test_xmpp_to_sip_rows(self) -> None:
        self.assertEqual(iw.sip_status_for_xmpp_condition("unexpected-request"), 491)
        self.assertEqual(iw.sip_status_for_xmpp_condition("item-not-found", bare=True), 604)
        self.assertEqual(iw.sip_status_for_xmpp_condition("gone", new_address=True), 301)
        self.assertEqual(iw.sip_status_for_xmpp_condition("no-such-condition"), 400)
        self.assertNotIn(503, [code for pair in iw.XMPP_TO_SIP.values() for code in pair])

    def test_prim_rows(self) -> None:
        self.assertEqual(iw.cpim_status_for_prim(300), (Status.FAILURE, Condition.NO_ROUTE))
        self.assertEqual(iw.cpim_status_for_prim(408), (Status.FAILURE, Condition.UNAVAILABLE))
        self.assertEqual(iw.cpim_status_for_prim(101), (Status.INDETERMINANT, None))
        self.assertEqual(iw.cpim_status_for_prim(399), (Status.FAILURE, Condition.NO_ROUTE))
        # A redirect is the same failure from either side.
        self.assertEqual(iw.condition_for_sip_status(302), iw.cpim_status_for_prim(300)[1])
