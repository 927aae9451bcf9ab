"""Tests of the XMPP adapter (cpimgw.adapters.xmpp)."""
