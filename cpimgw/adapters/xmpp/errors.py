"""Stanza errors <-> CPIM conditions and SIP status codes (RFC 7247 §7, RFC 6120 §8.3).

Four pure tables, each tested as a table:

* :data:`XMPP_TO_SIP` — RFC 7247 §7.1: an XMPP stanza error condition to the
  SIP status code, with the full-JID / bare-JID split where the RFC makes one;
* :data:`SIP_TO_XMPP` — RFC 7247 §7.2: a SIP status code to the XMPP condition,
  with the class defaults for unlisted codes;
* :data:`CONDITION_TO_XMPP` — a CPIM :class:`Condition` to the stanza error the
  gateway sends an XMPP user;
* :data:`XMPP_TO_CONDITION` — a stanza error received from XMPP to the CPIM
  condition on the bus.  The ``Response.native_code`` of such a failure is the
  RFC 7247 SIP code, so the SIP adapter can answer exactly that code.

Stanza error ``type`` values follow RFC 6120 §8.3.3 (:data:`ERROR_TYPES`).
"""

from __future__ import annotations

from cpimgw.cpim.operations import Condition

#: RFC 7247 §7.1: condition -> (SIP code when the JID was a full JID, when bare).
XMPP_TO_SIP: dict[str, tuple[int, int]] = {
    "bad-request": (400, 400),
    "conflict": (400, 400),
    "feature-not-implemented": (405, 501),
    "forbidden": (403, 603),
    "gone": (410, 410),  # 301 when a new address is given: see sip_status_for_stanza_error
    "internal-server-error": (500, 500),
    "item-not-found": (404, 604),
    "jid-malformed": (400, 400),
    "not-acceptable": (406, 606),
    "not-allowed": (403, 403),
    "not-authorized": (401, 401),
    "policy-violation": (403, 403),
    "recipient-unavailable": (480, 600),
    "redirect": (302, 302),
    "registration-required": (407, 407),
    "remote-server-not-found": (404, 404),
    "remote-server-timeout": (408, 408),
    "resource-constraint": (500, 500),
    "service-unavailable": (403, 403),  # RFC 7247: NOT 503 (that means the whole server)
    "subscription-required": (400, 400),
    "undefined-condition": (400, 400),
    "unexpected-request": (491, 491),
}

#: RFC 7247 §7.2: SIP code -> XMPP condition.
SIP_TO_XMPP: dict[int, str] = {
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
#: RFC 7247 §7.2: codes not in the table, by class.
SIP_CLASS_DEFAULTS: dict[int, str] = {
    3: "redirect",
    4: "bad-request",
    5: "internal-server-error",
    6: "recipient-unavailable",
}

#: The stanza error the gateway sends for a CPIM failure (RFC 7247 vocabulary).
CONDITION_TO_XMPP: dict[Condition, str] = {
    Condition.BAD_REQUEST: "bad-request",
    Condition.NOT_AUTHORIZED: "not-authorized",
    Condition.FORBIDDEN: "forbidden",
    Condition.NOT_FOUND: "item-not-found",
    Condition.NOT_ACCEPTABLE: "not-acceptable",
    Condition.TIMEOUT: "remote-server-timeout",
    Condition.GONE: "gone",
    Condition.TOO_LARGE: "policy-violation",  # SIP 413 -> policy-violation
    Condition.UNSUPPORTED_MEDIA: "not-acceptable",  # SIP 415 -> not-acceptable
    Condition.UNSUPPORTED: "feature-not-implemented",
    Condition.UNAVAILABLE: "recipient-unavailable",
    Condition.LOOP: "not-acceptable",  # SIP 482/483 -> not-acceptable
    Condition.BUSY: "resource-constraint",
    Condition.NO_ROUTE: "remote-server-not-found",
    Condition.NO_SUBSCRIPTION: "item-not-found",  # SIP 481 -> item-not-found
    Condition.INTERNAL: "internal-server-error",
    Condition.SERVICE_UNAVAILABLE: "service-unavailable",
}

#: The CPIM condition for a stanza error received from XMPP.
XMPP_TO_CONDITION: dict[str, Condition] = {
    "bad-request": Condition.BAD_REQUEST,
    "conflict": Condition.BAD_REQUEST,
    "feature-not-implemented": Condition.UNSUPPORTED,
    "forbidden": Condition.FORBIDDEN,
    "gone": Condition.GONE,
    "internal-server-error": Condition.INTERNAL,
    "item-not-found": Condition.NOT_FOUND,
    "jid-malformed": Condition.BAD_REQUEST,
    "not-acceptable": Condition.NOT_ACCEPTABLE,
    "not-allowed": Condition.FORBIDDEN,
    "not-authorized": Condition.NOT_AUTHORIZED,
    "policy-violation": Condition.FORBIDDEN,  # RFC 7247: 403
    "recipient-unavailable": Condition.UNAVAILABLE,
    "redirect": Condition.NOT_FOUND,  # native_code 302 carries the redirect
    "registration-required": Condition.NOT_AUTHORIZED,
    "remote-server-not-found": Condition.NO_ROUTE,
    "remote-server-timeout": Condition.TIMEOUT,
    "resource-constraint": Condition.BUSY,
    "service-unavailable": Condition.FORBIDDEN,  # RFC 7247: 403, never 503
    "subscription-required": Condition.BAD_REQUEST,
    "undefined-condition": Condition.BAD_REQUEST,
    "unexpected-request": Condition.BAD_REQUEST,
}

#: RFC 6120 §8.3.3: the error type that goes with each condition.
ERROR_TYPES: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


def sip_status_for_stanza_error(condition: str, *, bare: bool = False, new_address: bool = False) -> int:
    """RFC 7247 §7.1: the SIP status for a stanza error ``condition``.

    :param bare: whether the stanza that failed was addressed to a bare JID
        (4xx vs 6xx rows).
    :param new_address: for ``gone``, whether the error gives a new address (301).
    """
    if condition == "gone" and new_address:
        return 301
    full, bare_code = XMPP_TO_SIP.get(condition, XMPP_TO_SIP["undefined-condition"])
    return bare_code if bare else full


def stanza_error_for_sip_status(code: int) -> str:
    """RFC 7247 §7.2: the XMPP condition for a SIP status code (3xx-6xx)."""
    if code in SIP_TO_XMPP:
        return SIP_TO_XMPP[code]
    if code // 100 in SIP_CLASS_DEFAULTS:
        return SIP_CLASS_DEFAULTS[code // 100]
    raise ValueError(f"SIP status {code} has no XMPP error (RFC 7247 maps only 3xx-6xx)")


def stanza_error_for_condition(condition: Condition | None, native_code: int | None = None) -> tuple[str, str]:
    """``(xmpp condition, error type)`` for a CPIM failure.

    When the far side was SIP (``native_code`` 300-699) the RFC 7247 §7.2 row
    of that exact code wins over the coarser condition.
    """
    if native_code is not None and 300 <= native_code <= 699:
        name = stanza_error_for_sip_status(native_code)
    elif condition is None:
        name = "undefined-condition"
    else:
        name = CONDITION_TO_XMPP.get(condition, "undefined-condition")
    return name, ERROR_TYPES[name]


def condition_for_stanza_error(condition: str) -> Condition:
    """The CPIM condition for a stanza error received from XMPP (unknown ones: bad-request)."""
    return XMPP_TO_CONDITION.get(condition, Condition.BAD_REQUEST)
