"""Tests of the PRIM adapter (cpimgw.adapters.prim)."""
