"""One table of failures across the networks: SIP status <-> XMPP stanza error <-> CPIM Condition <-> PRIM status.

The RFC 7247 §7 tables (digest §8.2) and the PRIM status table of digest
§2.7/§2.12, as data, with the small pure functions the adapters look them
up with.  Each adapter's ``errors`` module re-exports what it uses (the
adapters never import each other, and nothing here imports an adapter or
Twisted):

=============================  ============================================================
:data:`SIP_TO_XMPP`            RFC 7247 §7.2: SIP 3xx-6xx -> XMPP condition (unlisted codes
                               by class, :data:`SIP_CLASS_DEFAULTS`)
:data:`XMPP_TO_SIP`            RFC 7247 §7.1: XMPP condition -> (SIP code for a full JID, for a
                               bare JID); ``unexpected-request`` is 491 ("491 or 400": the
                               precise one), ``service-unavailable`` never 503
:data:`XMPP_TO_CONDITION`      an XMPP condition (received, or the §7.2 word of a SIP code)
                               -> the CPIM :class:`Condition` on the bus
:data:`CONDITION_TO_XMPP`      a CPIM condition -> the stanza error the gateway sends
:data:`ERROR_TYPES`            RFC 6120 §8.3.3: the stanza error ``type`` of each condition
:data:`CONDITION_TO_SIP`       a CPIM condition -> the SIP status and reason phrase the gateway
                               answers a SIP request with
:data:`PRIM_TO_CPIM`           a PRIM status -> (CPIM status, condition) (digest §2.12)
:data:`CONDITION_TO_PRIM`      a CPIM condition -> the PRIM status answering a PRIM request
:data:`PRIM_TO_SIP`,           digest §2.12: the SIP and XMPP columns of the PRIM status table
:data:`PRIM_TO_XMPP`
=============================  ============================================================

A SIP code maps to a Condition through its RFC 7247 §7.2 XMPP word
(:func:`condition_for_sip_status`), except where the SIP code says more than
the word (:data:`SIP_CONDITION_OVERRIDES`: 415, 481, 482, 483, 486, 503),
so that SIP -> hub -> XMPP gives exactly the §7.2 row and XMPP -> hub -> SIP
the §7.1 row.
"""

from __future__ import annotations

import re
from typing import Optional

from cpimgw.cpim.operations import Condition, Status

# ----------------------------------------------------------------- RFC 7247 §7.2: SIP -> XMPP

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

#: RFC 7247 §7.2: codes not in the table, by class.
SIP_CLASS_DEFAULTS: dict[int, str] = {
    3: "redirect",
    4: "bad-request",
    5: "internal-server-error",
    6: "recipient-unavailable",
}

# ----------------------------------------------------------------- RFC 7247 §7.1: XMPP -> SIP

#: RFC 7247 §7.1: condition -> (SIP code when the JID was a full JID, when bare).
XMPP_TO_SIP: dict[str, tuple[int, int]] = {
    "bad-request": (400, 400),
    "conflict": (400, 400),
    "feature-not-implemented": (405, 501),
    "forbidden": (403, 603),
    "gone": (410, 410),  # 301 when a new address is given: see sip_status_for_xmpp_condition
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
    "service-unavailable": (403, 403),  # RFC 7247: NOT 503 (that means the whole server is down)
    "subscription-required": (400, 400),
    "undefined-condition": (400, 400),
    "unexpected-request": (491, 491),  # RFC 7247: "491 or 400"
}

# ----------------------------------------------------------------- XMPP conditions <-> CPIM conditions

#: The CPIM condition for an XMPP stanza error condition (received from XMPP, or the
#: RFC 7247 §7.2 word of a SIP code).  Where the Condition vocabulary has the very word
#: (Condition values follow the RFC 7247 rows), it is that Condition.
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
    "policy-violation": Condition.TOO_LARGE,  # the same word; SIP 403 (RFC 7247 §7.1), PRIM 402
    "recipient-unavailable": Condition.UNAVAILABLE,
    "redirect": Condition.NO_ROUTE,  # a redirect the gateway cannot follow (PRIM 300 alike); native_code keeps 3xx
    "registration-required": Condition.NOT_AUTHORIZED,
    "remote-server-not-found": Condition.NO_ROUTE,
    "remote-server-timeout": Condition.TIMEOUT,
    "resource-constraint": Condition.BUSY,
    "service-unavailable": Condition.FORBIDDEN,  # RFC 7247: 403, never 503
    "subscription-required": Condition.BAD_REQUEST,
    "undefined-condition": Condition.BAD_REQUEST,
    "unexpected-request": Condition.BAD_REQUEST,
}

#: The stanza error the gateway sends an XMPP user for a CPIM failure (RFC 7247 vocabulary).
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

# ----------------------------------------------------------------- SIP status <-> CPIM conditions

#: SIP codes whose CPIM condition is more precise than their RFC 7247 §7.2 XMPP word.
SIP_CONDITION_OVERRIDES: dict[int, Condition] = {
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
    Condition.TOO_LARGE: (403, "Forbidden"),  # RFC 7247 §7.1: policy-violation -> 403
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

# ----------------------------------------------------------------- PRIM (digest §2.7, §2.12)

#: PRIM status -> (CPIM status, condition) (digest §2.12, "CPIM status" column).
PRIM_TO_CPIM: dict[int, tuple[Status, Optional[Condition]]] = {
    100: (Status.INDETERMINANT, None),
    101: (Status.INDETERMINANT, None),
    200: (Status.SUCCESS, None),
    201: (Status.SUCCESS, None),
    300: (Status.FAILURE, Condition.NO_ROUTE),
    400: (Status.FAILURE, Condition.BAD_REQUEST),
    401: (Status.FAILURE, Condition.NOT_AUTHORIZED),
    402: (Status.FAILURE, Condition.FORBIDDEN),
    403: (Status.FAILURE, Condition.NOT_FOUND),
    404: (Status.FAILURE, Condition.NO_SUBSCRIPTION),
    406: (Status.FAILURE, Condition.NOT_AUTHORIZED),
    407: (Status.FAILURE, Condition.TIMEOUT),
    408: (Status.FAILURE, Condition.UNAVAILABLE),
    409: (Status.FAILURE, Condition.BAD_REQUEST),
    410: (Status.FAILURE, Condition.FORBIDDEN),
    500: (Status.FAILURE, Condition.INTERNAL),
    501: (Status.FAILURE, Condition.UNSUPPORTED),
    502: (Status.FAILURE, Condition.NO_ROUTE),
    503: (Status.FAILURE, Condition.NOT_ACCEPTABLE),
    504: (Status.FAILURE, Condition.TIMEOUT),
    505: (Status.FAILURE, Condition.BUSY),
}

#: CPIM condition -> PRIM status for answering a PRIM request.
CONDITION_TO_PRIM: dict[Condition, int] = {
    Condition.BAD_REQUEST: 400,
    Condition.NOT_AUTHORIZED: 402,
    Condition.FORBIDDEN: 402,
    Condition.NOT_FOUND: 403,
    Condition.NOT_ACCEPTABLE: 400,
    Condition.TIMEOUT: 504,
    Condition.GONE: 403,
    Condition.TOO_LARGE: 402,
    Condition.UNSUPPORTED_MEDIA: 400,
    Condition.UNSUPPORTED: 501,
    Condition.UNAVAILABLE: 408,
    Condition.LOOP: 502,
    Condition.BUSY: 505,
    Condition.NO_ROUTE: 502,
    Condition.NO_SUBSCRIPTION: 404,
    Condition.INTERNAL: 500,
    Condition.SERVICE_UNAVAILABLE: 502,
}

#: digest §2.12: PRIM status -> SIP status.
PRIM_TO_SIP: dict[int, int] = {
    200: 200, 201: 200, 101: 202, 300: 302, 400: 400, 401: 401, 402: 403, 403: 404, 404: 481,
    406: 403, 407: 408, 408: 480, 410: 403, 500: 500, 501: 501, 502: 502, 503: 505, 504: 504, 505: 503,
}

#: digest §2.12: PRIM status -> XMPP stanza error condition (``None``: no error).
PRIM_TO_XMPP: dict[int, Optional[str]] = {
    200: None, 201: None, 101: None, 300: "redirect", 400: "bad-request", 401: "not-authorized",
    402: "forbidden", 403: "item-not-found", 404: "item-not-found", 406: "not-authorized",
    407: "remote-server-timeout", 408: "recipient-unavailable", 410: "policy-violation",
    500: "internal-server-error", 501: "feature-not-implemented", 502: "remote-server-not-found",
    503: "not-acceptable", 504: "remote-server-timeout", 505: "resource-constraint",
}


# ----------------------------------------------------------------- lookups


def xmpp_condition_for_sip_status(code: int) -> str:
    """RFC 7247 §7.2: the XMPP stanza error condition for a SIP 3xx-6xx code.

    :raise ValueError: 1xx and 2xx have no XMPP error.
    """
    if code in SIP_TO_XMPP:
        return SIP_TO_XMPP[code]
    if 300 <= code <= 699:
        return SIP_CLASS_DEFAULTS[code // 100]
    raise ValueError(f"SIP status {code} has no XMPP error (RFC 7247 maps only 3xx-6xx)")


def sip_status_for_xmpp_condition(condition: str, *, bare: bool = False, new_address: bool = False) -> int:
    """RFC 7247 §7.1: the SIP code for an XMPP stanza error condition (unknown ones as ``undefined-condition``).

    :param bare: the stanza that failed was addressed to a bare JID (6xx where the RFC splits).
    :param new_address: ``gone`` carried a new address (301, else 410).
    """
    if condition == "gone" and new_address:
        return 301
    full, bare_code = XMPP_TO_SIP.get(condition, XMPP_TO_SIP["undefined-condition"])
    return bare_code if bare else full


def condition_for_xmpp_condition(condition: str) -> Condition:
    """The CPIM condition for an XMPP stanza error condition (unknown ones: ``bad-request``)."""
    return XMPP_TO_CONDITION.get(condition, Condition.BAD_REQUEST)


def condition_for_sip_status(code: int) -> Condition:
    """A SIP final failure status (3xx-6xx) -> the CPIM :class:`Condition` on the bus."""
    if code in SIP_CONDITION_OVERRIDES:
        return SIP_CONDITION_OVERRIDES[code]
    return condition_for_xmpp_condition(xmpp_condition_for_sip_status(code))


def sip_status_for_condition(condition: Condition | None) -> tuple[int, str]:
    """A CPIM failure condition -> (SIP status, reason phrase); ``None`` -> 500."""
    if condition is None:
        return (500, "Server Internal Error")
    return CONDITION_TO_SIP[condition]


def xmpp_error_for_condition(condition: Condition | None, native_code: int | None = None) -> tuple[str, str]:
    """``(xmpp condition, error type)`` for a CPIM failure.

    When the far side was SIP (``native_code`` 300-699) the RFC 7247 §7.2 row
    of that exact code wins over the coarser condition.
    """
    if native_code is not None and 300 <= native_code <= 699:
        name = xmpp_condition_for_sip_status(native_code)
    elif condition is None:
        name = "undefined-condition"
    else:
        name = CONDITION_TO_XMPP.get(condition, "undefined-condition")
    return name, ERROR_TYPES[name]


def cpim_status_for_prim(code: int) -> tuple[Status, Optional[Condition]]:
    """The CPIM status and condition of a PRIM status code (unlisted codes by class)."""
    if code in PRIM_TO_CPIM:
        return PRIM_TO_CPIM[code]
    if code < 200:
        return Status.INDETERMINANT, None
    if code < 300:
        return Status.SUCCESS, None
    if code < 400:
        return Status.FAILURE, Condition.NO_ROUTE
    if code < 500:
        return Status.FAILURE, Condition.BAD_REQUEST
    return Status.FAILURE, Condition.INTERNAL


# ----------------------------------------------------------------- the far network's own status, in the reason

_TAGGED = re.compile(r"^(SIP|PRIM) ([1-6][0-9][0-9])\b ?(.*)\Z|^(XMPP) ([a-z-]+)\b ?(.*)\Z", re.DOTALL)


def tag_reason(protocol: str, status: int | str, text: str = "") -> str:
    """A response's reason that names the status its own network gave it (``SIP 486 Busy Here``,
    ``PRIM 410 Gone``, ``XMPP item-not-found``): the human-readable text every network passes on
    (a SIP reason phrase, RFC 3261 §21; an XMPP ``<text/>``, RFC 6120 §8.3.2; a PRIM phrase), from which
    the same network reads its exact status back where the condition tables are many to one."""
    if _TAGGED.match(text or ""):
        return text
    return f"{protocol} {status}" + (f" {text}" if text else "")


def tagged_status(reason: str, protocol: str) -> tuple[str | None, str]:
    """``(status written by `protocol`, the rest)`` of a :func:`tag_reason` text, else ``(None, reason)``."""
    match = _TAGGED.match(reason or "")
    if match is None:
        return None, reason or ""
    name, status, rest = (match.group(1), match.group(2), match.group(3)) if match.group(1) else (
        match.group(4), match.group(5), match.group(6))
    return (status, rest) if name == protocol else (None, reason)
