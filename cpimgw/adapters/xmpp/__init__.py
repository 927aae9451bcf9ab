"""The XMPP adapter of cpimgw: XMPP stanzas <-> CPIM operations.

Modules (design.md §2):

- :mod:`.addresses` — JID <-> im:/pres: (RFC 3922 §3, RFC 7247 §5, XEP-0106);
- :mod:`.errors` — stanza errors <-> CPIM conditions and SIP codes (RFC 7247 §7);
- :mod:`.hardening` — the restricted, bounded XML stream parser (RFC 6120 §11, §13.12);
- :mod:`.mapping` — pure stanza <-> CPIM operation mapping (RFC 3922 §4-6,
  RFC 7248, RFC 7572);
- :mod:`.component` — XEP-0114 external component connection with backoff;
- :mod:`.s2s` — server-to-server streams: STARTTLS, XEP-0220 dialback
  (XEP-0185 keys), SRV/static peers (RFC 6120 §3.2, §4-5);
- :mod:`.tls` — certificates for s2s (self-signed generation, trust roots);
- :mod:`.adapter` — the ``IAdapter`` service tying it to the bus;
- :mod:`.codec` — the single-stanza codec for ``cpimgw parse``/``translate``.
"""
