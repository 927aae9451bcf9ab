"""Tests of cpimgw.adapters.xmpp.errors: the RFC 7247 §7 tables, row by row."""

from __future__ import annotations

from twisted.trial import unittest

from cpimgw.adapters.xmpp import errors
from cpimgw.cpim.operations import Condition


class XmppToSipTests(unittest.TestCase):
    # RFC 7247 §7.1 (condition, full-JID code, bare-JID code).
    TABLE = [
        ("bad-request", 400, 400), ("conflict", 400, 400),
        ("feature-not-implemented", 405, 501), ("forbidden", 403, 603),
        ("gone", 410, 410), ("internal-server-error", 500, 500),
        ("item-not-found", 404, 604), ("jid-malformed", 400, 400),
        ("not-acceptable", 406, 606), ("not-allowed", 403, 403),
        ("not-authorized", 401, 401), ("policy-violation", 403, 403),
        ("recipient-unavailable", 480, 600), ("redirect", 302, 302),
        ("registration-required", 407, 407), ("remote-server-not-found", 404, 404),
        ("remote-server-timeout", 408, 408), ("resource-constraint", 500, 500),
        ("service-unavailable", 403, 403), ("subscription-required", 400, 400),
        ("undefined-condition", 400, 400), ("unexpected-request", 491, 491),
    ]

    def test_table(self):
        self.assertEqual(len(self.TABLE), len(errors.XMPP_TO_SIP))
        for condition, full, bare in self.TABLE:
            self.assertEqual(errors.sip_status_for_stanza_error(condition), full, condition)
            self.assertEqual(errors.sip_status_for_stanza_error(condition, bare=True), bare, condition)

    def test_gone_with_new_address(self):
        self.assertEqual(errors.sip_status_for_stanza_error("gone", new_address=True), 301)

    def test_never_503(self):
        self.assertNotIn(503, [code for pair in errors.XMPP_TO_SIP.values() for code in pair])


class SipToXmppTests(unittest.TestCase):
    # RFC 7247 §7.2, every row.
    TABLE = {
        300: "redirect", 301: "gone", 302: "redirect", 305: "redirect", 380: "not-acceptable",
        400: "bad-request", 401: "not-authorized", 402: "bad-request", 403: "forbidden",
        404: "item-not-found", 405: "feature-not-implemented", 406: "not-acceptable",
        407: "registration-required", 408: "remote-server-timeout", 410: "gone",
        413: "policy-violation", 414: "policy-violation", 415: "not-acceptable",
        416: "not-acceptable", 420: "feature-not-implemented", 421: "not-acceptable",
        423: "resource-constraint", 430: "recipient-unavailable", 439: "feature-not-implemented",
        440: "policy-violation", 480: "recipient-unavailable", 481: "item-not-found",
        482: "not-acceptable", 483: "not-acceptable", 484: "item-not-found", 485: "item-not-found",
        486: "recipient-unavailable", 487: "recipient-unavailable", 488: "not-acceptable",
        489: "policy-violation", 491: "unexpected-request", 493: "bad-request",
        500: "internal-server-error", 501: "feature-not-implemented", 502: "remote-server-not-found",
        503: "internal-server-error", 504: "remote-server-timeout", 505: "not-acceptable",
        513: "policy-violation", 600: "recipient-unavailable", 603: "recipient-unavailable",
        604: "item-not-found", 606: "not-acceptable",
    }

    def test_table(self):
        for code, condition in self.TABLE.items():
            self.assertEqual(errors.stanza_error_for_sip_status(code), condition, code)

    def test_class_defaults(self):
        self.assertEqual(errors.stanza_error_for_sip_status(399), "redirect")
        self.assertEqual(errors.stanza_error_for_sip_status(499), "bad-request")
        self.assertEqual(errors.stanza_error_for_sip_status(599), "internal-server-error")
        self.assertEqual(errors.stanza_error_for_sip_status(699), "recipient-unavailable")

    def test_no_mapping_for_1xx_2xx(self):
        self.assertRaises(ValueError, errors.stanza_error_for_sip_status, 200)
        self.assertRaises(ValueError, errors.stanza_error_for_sip_status, 180)


class ConditionTests(unittest.TestCase):
    TABLE = [
        (Condition.BAD_REQUEST, None, ("bad-request", "modify")),
        (Condition.NOT_FOUND, None, ("item-not-found", "cancel")),
        (Condition.FORBIDDEN, None, ("forbidden", "auth")),
        (Condition.TOO_LARGE, None, ("policy-violation", "modify")),
        (Condition.UNAVAILABLE, None, ("recipient-unavailable", "wait")),
        (Condition.NO_ROUTE, None, ("remote-server-not-found", "cancel")),
        (Condition.LOOP, None, ("not-acceptable", "modify")),
        (Condition.UNSUPPORTED, None, ("feature-not-implemented", "cancel")),
        (Condition.TIMEOUT, None, ("remote-server-timeout", "wait")),
        (None, None, ("undefined-condition", "cancel")),
        # A SIP code on the response wins: RFC 7247 §7.2 row of the exact code.
        (Condition.NOT_FOUND, 481, ("item-not-found", "cancel")),
        (Condition.BAD_REQUEST, 420, ("feature-not-implemented", "cancel")),
        (Condition.FORBIDDEN, 489, ("policy-violation", "modify")),
    ]

    def test_condition_to_stanza_error(self):
        self.assertEqual(set(errors.CONDITION_TO_XMPP), set(Condition))
        for condition, code, expected in self.TABLE:
            self.assertEqual(errors.stanza_error_for_condition(condition, code), expected)

    def test_stanza_error_to_condition(self):
        self.assertEqual(set(errors.XMPP_TO_CONDITION), set(errors.XMPP_TO_SIP))
        self.assertEqual(errors.condition_for_stanza_error("item-not-found"), Condition.NOT_FOUND)
        self.assertEqual(errors.condition_for_stanza_error("service-unavailable"), Condition.FORBIDDEN)
        self.assertEqual(errors.condition_for_stanza_error("remote-server-not-found"), Condition.NO_ROUTE)
        self.assertEqual(errors.condition_for_stanza_error("no-such-thing"), Condition.BAD_REQUEST)
