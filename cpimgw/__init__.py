"""cpimgw: a CPIM gateway between XMPP, SIP/SIMPLE and PRIM (RFC 3859, 3860, 3862, 3863).

Native units are translated into abstract CPIM operations
(:mod:`cpimgw.cpim.operations`) on one bus (:mod:`cpimgw.bus`) and from there
into the native units of the destination network.  See the README for the
architecture and ``cpimgw.interfaces`` for the contracts.
"""

__version__ = "0.1.0"
