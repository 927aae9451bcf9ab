"""Stanza errors <-> CPIM conditions and SIP status codes (RFC 7247 §7, RFC 6120 §8.3).

The tables live once, in :mod:`cpimgw.cpim.interworking` (shared with the SIP
and PRIM adapters); this module gives them the names the XMPP adapter uses:

* :data:`XMPP_TO_SIP` — RFC 7247 §7.1: an XMPP stanza error condition to the
  SIP status code, with the full-JID / bare-JID split where the RFC makes one;
* :data:`SIP_TO_XMPP` — RFC 7247 §7.2: a SIP status code to the XMPP condition,
  with the class defaults (:data:`SIP_CLASS_DEFAULTS`) for unlisted codes;
* :data:`CONDITION_TO_XMPP` — a CPIM :class:`Condition` to the stanza error the
  gateway sends an XMPP user;
* :data:`XMPP_TO_CONDITION` — a stanza error received from XMPP to the CPIM
  condition on the bus.  The ``Response.native_code`` of such a failure is the
  RFC 7247 SIP code, so the SIP adapter can answer exactly that code;
* :data:`ERROR_TYPES` — RFC 6120 §8.3.3: the error ``type`` of each condition.
"""

from __future__ import annotations

from cpimgw.cpim.interworking import (
    CONDITION_TO_XMPP,
    ERROR_TYPES,
    SIP_CLASS_DEFAULTS,
    SIP_TO_XMPP,
    XMPP_TO_CONDITION,
    XMPP_TO_SIP,
    condition_for_xmpp_condition as condition_for_stanza_error,
    sip_status_for_xmpp_condition as sip_status_for_stanza_error,
    xmpp_condition_for_sip_status as stanza_error_for_sip_status,
    xmpp_error_for_condition as stanza_error_for_condition,
)

__all__ = [
    "CONDITION_TO_XMPP", "ERROR_TYPES", "SIP_CLASS_DEFAULTS", "SIP_TO_XMPP", "XMPP_TO_CONDITION", "XMPP_TO_SIP",
    "condition_for_stanza_error", "sip_status_for_stanza_error", "stanza_error_for_condition",
    "stanza_error_for_sip_status",
]
