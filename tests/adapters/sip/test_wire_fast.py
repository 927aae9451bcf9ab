"""The SIP parser's fast paths agree with its general paths (cpimgw.adapters.sip.wire).

The data path parses unfolded header blocks with known names in one tight
loop and splits lists/parameters without a character scan when no quote or
bracket can matter; these properties pin that the results are the ones the
general code gives.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from cpimgw.adapters.sip import wire
from cpimgw.cpim.errors import ParseError

SETTINGS = settings(max_examples=200, deadline=None)
names = st.sampled_from(["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Subject", "X-Custom", "v", "l",
                         "Via ", "Content-Type", "f"])
values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2fff, blacklist_characters="\x7f"),
                 max_size=30)
lines = st.lists(st.tuples(names, st.sampled_from([":", " : ", ":\t"]), values), min_size=1, max_size=12)


def general_split(value: str) -> list[str]:
    """split_list without its fast paths (the character scan)."""
    parts, depth, start, index = [], 0, 0, 0
    while index < len(value):
        char = value[index]
        if char == '"':
            index = wire._scan_quoted(value, index)
            continue
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(value[start:index].strip())
            start = index + 1
        index += 1
    parts.append(value[start:].strip())
    return parts


class FastPathTests(SynchronousTestCase):
    @SETTINGS
    @given(lines)
    def test_unfolded_header_block(self, block) -> None:  # type: ignore[no-untyped-def]
        text = [f"{name}{colon}{value}" for name, colon, value in block]
        for line in text:  # make every name known to the cache, as on a live path
            wire._header_key(line.partition(":")[0].rstrip(" \t"))
        general = wire._parse_folded_lines(text, 256)
        fast = wire._parse_unfolded_lines(text)
        if fast is not None:
            self.assertEqual(fast, general)
        self.assertEqual(wire._parse_header_lines(text, 256), general)

    @SETTINGS
    @given(st.text(alphabet='ab ,;"<>\\', max_size=24))
    def test_split_list(self, value: str) -> None:
        try:
            expected = general_split(value)
        except ParseError:
            with self.assertRaises(ParseError):
                wire.split_list(value)
            return
        self.assertEqual(wire.split_list(value), expected)
