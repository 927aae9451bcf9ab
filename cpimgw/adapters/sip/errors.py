"""SIP status codes <-> CPIM conditions <-> XMPP stanza error conditions (RFC 7247 §7).

The tables live once, in :mod:`cpimgw.cpim.interworking` (shared with the
XMPP and PRIM adapters); this module gives them the names the SIP adapter
has always used:

- :data:`SIP_TO_XMPP` — RFC 7247 §7.2 (SIP -> XMPP); unlisted codes by class.
- :data:`XMPP_TO_SIP` — RFC 7247 §7.1 (XMPP -> SIP), full-JID / bare-JID split.
- :func:`condition_for_status` — a SIP final status -> CPIM :class:`Condition`.
- :func:`status_for_condition` — a CPIM condition -> the SIP final status and
  reason phrase the gateway answers with.
- :func:`xmpp_condition_for_status`, :func:`sip_status_for_xmpp`,
  :func:`condition_for_xmpp` — the RFC 7247 rows by name.
"""

from __future__ import annotations

from cpimgw.cpim.interworking import (
    CONDITION_TO_SIP,
    SIP_CLASS_DEFAULTS as _CLASS_DEFAULT,
    SIP_CONDITION_OVERRIDES as _SIP_CONDITION_OVERRIDES,
    SIP_TO_XMPP,
    XMPP_TO_SIP,
    condition_for_sip_status as condition_for_status,
    condition_for_xmpp_condition as condition_for_xmpp,
    sip_status_for_condition as status_for_condition,
    sip_status_for_xmpp_condition as sip_status_for_xmpp,
    xmpp_condition_for_sip_status as xmpp_condition_for_status,
)

__all__ = [
    "CONDITION_TO_SIP", "SIP_TO_XMPP", "XMPP_TO_SIP", "condition_for_status", "condition_for_xmpp",
    "sip_status_for_xmpp", "status_for_condition", "xmpp_condition_for_status",
]
