"""The SIP/SIMPLE adapter: our own RFC 3261 stack on Twisted.

Layers, bottom up (each module says which RFC sections it follows):

- :mod:`.wire` — RFC 3261 §7/§20/§25 message syntax: parse and serialise.
- :mod:`.transport` — UDP, TCP and TLS, stream framing by Content-Length.
- :mod:`.transaction` — RFC 3261 §17 non-INVITE client and server transactions.
- :mod:`.digest` — RFC 3261 §22 / RFC 8760 digest authentication.
- :mod:`.resolver` — RFC 3263 server location or an outbound proxy.
- :mod:`.subscription` — RFC 6665 / RFC 3856 subscriber and notifier, RFC 3903 PUBLISH state.
- :mod:`.errors` — RFC 7247 §7 SIP status <-> CPIM Condition <-> XMPP condition tables.
- :mod:`.mapping` — pure SIP MESSAGE / NOTIFY / PUBLISH <-> CPIM operation mapping (RFC 7572, 7248).
- :mod:`.adapter` — the ``IAdapter`` service tying these to the bus.
- :mod:`.codec` — the ``INativeCodec`` for ``cpimgw parse sip`` / ``cpimgw translate``.
"""
