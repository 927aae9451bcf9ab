"""The PRIM adapter (draft-ietf-prim-server-00, draft-mazzoldi-prim-impp-01/-02; digest protocols.md §2).

- :mod:`.wire` -- command framing (start line with the body length, pipelining ids, limits);
- :mod:`.sasl` -- PLAIN, CRAM-MD5 and EXTERNAL for LOGIN;
- :mod:`.protocol` -- the Twisted connection (pipelining, refusals, STARTTLS);
- :mod:`.server` -- server-to-server and user-agent sessions (authentication, authorisation);
- :mod:`.mapping` -- pure PRIM <-> CPIM mapping and the status tables;
- :mod:`.presence_doc` -- the legacy ``application/presence`` document -> PIDF;
- :mod:`.acl` -- ACLs and class tables (polite blocking);
- :mod:`.adapter` -- the adapter on the bus, peers, discovery;
- :mod:`.client` -- a PRIM user agent on Twisted; :mod:`.cli` -- ``cpimgw prim``;
- :mod:`.codec` -- the ``prim`` codec of ``cpimgw parse`` / ``translate``.
"""
