"""The built-in protocol adapters (XMPP, SIP/SIMPLE, PRIM); they never import each other."""
