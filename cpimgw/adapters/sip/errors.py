"""SIP status codes <-> CPIM conditions <-> XMPP stanza error conditions (RFC 7247 §7).

Tables as data (digest §8.2), looked up by small pure functions:

- :data:`SIP_TO_XMPP` — RFC 7247 §7.2 (SIP -> XMPP); unlisted codes by class:
  3xx ``redirect``, 4xx ``bad-request``, 5xx ``internal-server-error``, 6xx
  ``recipient-unavailable``.
- :data:`XMPP_TO_SIP` — RFC 7247 §7.1 (XMPP -> SIP), with the full-JID/bare-JID
  split (4xx for a full JID, 6xx for a bare JID) where the RFC makes one.
- :func:`condition_for_status` — a SIP final status -> CPIM :class:`Condition`
  (through the XMPP condition when the vocabularies share the word).
- :func:`status_for_condition` — a CPIM condition -> the SIP final status and
  reason phrase the gateway answers with.
"""

from __future__ import annotations

from cpimgw.cpim.operations import Condition

#: RFC 7247 §7.2: SIP response code -> XMPP stanza error condition.
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

_CLASS_DEFAULT = {3: "redirect", 4: "bad-request", 5: "internal-server-error", 6: "recipient-unavailable"}

#: RFC 7247 §7.1: XMPP condition -> (SIP code for a full JID, SIP code for a bare JID).
XMPP_TO_SIP: dict[str, tuple[int, int]] = {
    "bad-request": (400, 400), "conflict": (400, 400),
    "feature-not-implemented": (405, 501), "forbidden": (403, 603), "gone": (410, 410),
    "internal-server-error": (500, 500), "item-not-found": (404, 604), "jid-malformed": (400, 400),
    "not-acceptable": (406, 606), "not-allowed": (403, 403), "not-authorized": (401, 401),
    "policy-violation": (403, 403), "recipient-unavailable": (480, 600), "redirect": (302, 302),
    "registration-required": (407, 407), "remote-server-not-found": (404, 404),
    "remote-server-timeout": (408, 408), "resource-constraint": (500, 500),
    "service-unavailable": (403, 403),  # RFC 7247: NOT 503 (that means the whole server is down)
    "subscription-required": (400, 400), "undefined-condition": (400, 400),
    "unexpected-request": (400, 400),
}

#: XMPP condition words that are not also CPIM Condition values.
_XMPP_ONLY = {
    "redirect": Condition.UNAVAILABLE,
    "registration-required": Condition.NOT_AUTHORIZED,
    "unexpected-request": Condition.BAD_REQUEST,
    "conflict": Condition.BAD_REQUEST,
    "jid-malformed": Condition.BAD_REQUEST,
    "not-allowed": Condition.FORBIDDEN,
    "subscription-required": Condition.BAD_REQUEST,
    "undefined-condition": Condition.BAD_REQUEST,
}

#: SIP codes whose CPIM condition is more precise than the XMPP word.
_SIP_CONDITION_OVERRIDES = {
    415: Condition.UNSUPPORTED_MEDIA,
    481: Condition.NO_SUBSCRIPTION,
    482: Condition.LOOP,
    483: Condition.LOOP,
    486: Condition.BUSY,
    503: Condition.SERVICE_UNAVAILABLE,
}

#: CPIM condition -> (SIP status, reason phrase) the gateway answers a SIP request with.
CONDITION_TO_SIP: dict[Condition, tuple[int, str]] = {
    Condition.BAD_REQUEST: (400, "Bad Request"),
    # RFC 7247 says 401, but a 401 must carry a challenge the gateway cannot
    # make on another network's behalf; 403 is the honest answer.
    Condition.NOT_AUTHORIZED: (403, "Forbidden"),
    Condition.FORBIDDEN: (403, "Forbidden"),
    Condition.NOT_FOUND: (404, "Not Found"),
    Condition.NOT_ACCEPTABLE: (406, "Not Acceptable"),
    Condition.TIMEOUT: (408, "Request Timeout"),
    Condition.GONE: (410, "Gone"),
    Condition.TOO_LARGE: (403, "Forbidden"),
    Condition.UNSUPPORTED_MEDIA: (415, "Unsupported Media Type"),
    Condition.UNSUPPORTED: (501, "Not Implemented"),
    Condition.UNAVAILABLE: (480, "Temporarily Unavailable"),
    Condition.LOOP: (482, "Loop Detected"),
    Condition.BUSY: (486, "Busy Here"),
    Condition.NO_ROUTE: (404, "Not Found"),
    Condition.NO_SUBSCRIPTION: (481, "Call/Transaction Does Not Exist"),
    Condition.INTERNAL: (500, "Server Internal Error"),
    Condition.SERVICE_UNAVAILABLE: (503, "Service Unavailable"),
}


def xmpp_condition_for_status(code: int) -> str:
    """RFC 7247 §7.2: the XMPP stanza error condition for a SIP 3xx-6xx code."""
    if not 300 <= code <= 699:
        raise ValueError(f"only 3xx-6xx SIP codes map to XMPP errors, not {code}")
    return SIP_TO_XMPP.get(code, _CLASS_DEFAULT[code // 100])


def sip_status_for_xmpp(condition: str, *, bare: bool = False, new_address: bool = False) -> int:
    """RFC 7247 §7.1: the SIP code for an XMPP stanza error condition.

    :param bare: the error is about a bare JID (6xx where the RFC splits).
    :param new_address: ``gone`` carried a new address (301, else 410).
    """
    if condition == "gone":
        return 301 if new_address else 410
    full, bare_code = XMPP_TO_SIP.get(condition, (400, 400))
    return bare_code if bare else full


def condition_for_status(code: int) -> Condition:
    """A SIP final failure status -> the CPIM :class:`Condition` on the bus."""
    if code in _SIP_CONDITION_OVERRIDES:
        return _SIP_CONDITION_OVERRIDES[code]
    word = xmpp_condition_for_status(code)
    if word in _XMPP_ONLY:
        return _XMPP_ONLY[word]
    return Condition(word)


def condition_for_xmpp(condition: str) -> Condition:
    """An XMPP condition word -> CPIM :class:`Condition` (``bad-request`` when unknown)."""
    if condition in _XMPP_ONLY:
        return _XMPP_ONLY[condition]
    try:
        return Condition(condition)
    except ValueError:
        return Condition.BAD_REQUEST


def status_for_condition(condition: Condition | None) -> tuple[int, str]:
    """A CPIM failure condition -> (SIP status, reason phrase); ``None`` -> 500."""
    if condition is None:
        return (500, "Server Internal Error")
    return CONDITION_TO_SIP[condition]
