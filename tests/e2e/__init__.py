"""End-to-end tests: real XMPP, SIP and PRIM users talking through cpimgw processes started by ``twistd``.

Each test starts the real peers (Prosody, Kamailio, sipp; slixmpp and the
cpimgw PRIM client as users) on free loopback ports and one or two gateway
processes the way an operator starts them (``twistd -n cpimgw --config FILE``
with a configuration generated from ``conf/three-networks.toml``), then
checks what the users on the far network see.  Missing peers skip the tests
on a developer's machine and fail them under ``CI=true``
(:func:`tests.interop.require_program`).
"""
