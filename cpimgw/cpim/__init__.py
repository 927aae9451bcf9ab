"""The abstract CPIM model: URIs, Message/CPIM, PIDF, operations. Pure, no I/O, no Twisted."""
