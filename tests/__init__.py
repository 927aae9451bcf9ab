"""Trial tests of cpimgw."""
