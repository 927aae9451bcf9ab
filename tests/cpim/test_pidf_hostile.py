"""Hostile XML against cpimgw.cpim.pidf / cpimgw.cpim.xmlsafe (perf-reliability.md Part B1).

Billion laughs (classic and small), external entities (XXE), quadratic
blow-up, depth and sibling bombs, processing instructions, encodings that
could hide a DOCTYPE.  Memory is bounded with tracemalloc; CPU time is
measured for the report but never asserted.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from typing import Callable

from twisted.trial import unittest

from cpimgw.cpim.errors import LimitExceededError, ParseError, PresenceDocumentError
from cpimgw.cpim.pidf import parse_pidf
from cpimgw.cpim.xmlsafe import parse_xml

MiB = 1024 * 1024
PEAK_LIMIT = 5 * MiB

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'
OPEN = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@example.com">'
CLOSE = b"</presence>"


def billion_laughs(levels: int = 10, width: int = 10, seed: bytes = b"lol") -> bytes:
    entities = [b'  <!ENTITY lol0 "' + seed + b'">']
    for level in range(1, levels):
        refs = b"".join(b"&lol%d;" % (level - 1) for _ in range(width))
        entities.append(b'  <!ENTITY lol%d "%s">' % (level, refs))
    return (
        HEAD
        + b"<!DOCTYPE presence [\n"
        + b"\n".join(entities)
        + b"\n]>\n"
        + OPEN
        + b"<note>&lol%d;</note>" % (levels - 1)
        + CLOSE
    )


def small_laughs() -> bytes:
    """A 643-octet five-level variant (3 MB expanded), the size that cost domish 48.6 s of CPU."""
    document = billion_laughs(levels=6, width=10, seed=b"ha" * 15)
    padding = 643 - len(document)
    assert padding >= 0, len(document)
    return document.replace(b"<!DOCTYPE presence [", b"<!DOCTYPE presence [" + b" " * padding, 1)


def measured(test: unittest.TestCase, call: Callable[[], object], error: type) -> tuple[BaseException, float, int]:
    """Run ``call`` expecting ``error``; return it, the CPU seconds and the peak traced allocation."""
    tracemalloc.start()
    try:
        started = time.process_time()
        failure = test.assertRaises(error, call)
        elapsed = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return failure, elapsed, peak


class EntityExpansionTests(unittest.TestCase):
    def test_classic_billion_laughs(self) -> None:
        document = billion_laughs()
        failure, elapsed, peak = measured(self, lambda: parse_pidf(document), PresenceDocumentError)
        self.assertIn("DOCTYPE", failure.reason)
        self.assertEqual(failure.line, 2)
        self.assertLess(peak, PEAK_LIMIT)

    def test_small_billion_laughs(self) -> None:
        document = small_laughs()
        self.assertEqual(len(document), 643)
        failure, elapsed, peak = measured(self, lambda: parse_pidf(document), PresenceDocumentError)
        self.assertIn("DOCTYPE", failure.reason)
        self.assertLess(peak, PEAK_LIMIT)

    def test_doctype_after_comment_and_in_utf16(self) -> None:
        hidden = HEAD + b"<!-- hello -->\n" + billion_laughs()[len(HEAD) :]
        self.assertIn("DOCTYPE", self.assertRaises(PresenceDocumentError, parse_pidf, hidden).reason)
        utf16 = billion_laughs().replace(b'encoding="UTF-8"', b'encoding="UTF-16"').decode("ascii").encode("utf-16")
        self.assertIn("DOCTYPE", self.assertRaises(PresenceDocumentError, parse_pidf, utf16).reason)

    def test_encoding_that_could_hide_a_doctype_is_refused(self) -> None:
        document = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE presence+AD4-' + OPEN + CLOSE
        error = self.assertRaises(PresenceDocumentError, parse_pidf, document)
        self.assertIn("encoding", error.reason)
        no_bom_utf16 = (OPEN + CLOSE).decode("ascii").encode("utf-16-le")
        self.assertRaises(PresenceDocumentError, parse_pidf, no_bom_utf16)

    def test_undefined_entity(self) -> None:
        error = self.assertRaises(
            PresenceDocumentError, parse_pidf, HEAD + OPEN + b"\n<note>&lol9;</note>" + CLOSE
        )
        self.assertEqual(error.line, 3)
        self.assertIn("lol9", error.reason)

    def test_predefined_and_character_references_still_work(self) -> None:
        document = parse_pidf(HEAD + OPEN + b"<note>&lt;&amp;&#233;&#x263A;</note>" + CLOSE)
        self.assertEqual(document.notes[0].text, "<&\u00e9\u263a")


class ExternalEntityTests(unittest.TestCase):
    MARKER = "cpimgw-xxe-marker-7f3a"

    def secret(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.abspath(os.path.join(directory, "secret.txt"))
        with open(path, "w") as handle:
            handle.write(self.MARKER)
        return path

    def check_refused(self, document: bytes) -> None:
        try:
            result = parse_pidf(document)
        except ParseError as error:
            self.assertNotIn(self.MARKER, str(error))
            return
        self.fail(f"accepted: {result!r}")

    def test_system_entity(self) -> None:
        path = self.secret()
        document = (
            HEAD
            + b'<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file://%s">]>\n' % path.encode()
            + OPEN
            + b"<note>&xxe;</note>"
            + CLOSE
        )
        self.check_refused(document)
        self.assertRaises(PresenceDocumentError, parse_pidf, document)

    def test_external_dtd_and_parameter_entity(self) -> None:
        path = self.secret().encode()
        self.check_refused(HEAD + b'<!DOCTYPE presence SYSTEM "file://%s">' % path + OPEN + CLOSE)
        self.check_refused(
            HEAD + b'<!DOCTYPE presence [<!ENTITY %% p SYSTEM "file://%s"> %%p;]>' % path + OPEN + CLOSE
        )

    def test_xinclude_is_not_processed(self) -> None:
        path = self.secret().encode()
        document = parse_pidf(
            HEAD
            + OPEN
            + b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://%s" parse="text"/>' % path
            + CLOSE
        )
        self.assertEqual(document.extensions[0].name, "include")
        self.assertNotIn(self.MARKER.encode(), document.to_bytes())


class SizeTests(unittest.TestCase):
    def test_one_mebibyte_of_text_is_over_the_size_limit(self) -> None:
        document = HEAD + OPEN + b"<note>" + b"a\n" * (MiB // 2) + b"</note>" + CLOSE
        failure, _, peak = measured(self, lambda: parse_pidf(document), LimitExceededError)
        self.assertEqual((failure.limit, failure.value), ("max_size", 256 * 1024))
        self.assertLess(peak, PEAK_LIMIT)

    def test_one_mebibyte_of_text_parses_linearly_when_allowed(self) -> None:
        document = HEAD + OPEN + b"<note>" + b"a\n" * (MiB // 2) + b"</note>" + CLOSE
        started = time.process_time()
        result = parse_pidf(document, max_size=2 * MiB)
        self.elapsed = time.process_time() - started
        self.assertEqual(len(result.notes[0].text), MiB)
        amps = HEAD + OPEN + b"<note>" + b"&amp;" * (MiB // 5) + b"</note>" + CLOSE
        self.assertEqual(len(parse_pidf(amps, max_size=2 * MiB).notes[0].text), MiB // 5)

    def test_depth_bomb(self) -> None:
        document = HEAD + OPEN + b"<x:a xmlns:x='urn:x'>" * 10000 + b"</x:a>" * 10000 + CLOSE
        failure, _, peak = measured(self, lambda: parse_pidf(document, max_size=MiB), LimitExceededError)
        self.assertEqual((failure.limit, failure.value), ("max_depth", 64))
        self.assertLess(peak, PEAK_LIMIT)
        # Within the default size limit the same bomb is refused too.
        self.assertRaises(LimitExceededError, parse_pidf, document)

    def test_hundred_thousand_siblings(self) -> None:
        document = HEAD + OPEN + b"<note/>" * 100000 + CLOSE
        failure, _, peak = measured(self, lambda: parse_pidf(document, max_size=10 * MiB), LimitExceededError)
        self.assertEqual((failure.limit, failure.value), ("max_elements", 10000))
        self.assertLess(peak, PEAK_LIMIT)
        failure = self.assertRaises(LimitExceededError, parse_pidf, document)
        self.assertEqual(failure.limit, "max_size")

    def test_limits_are_parameters(self) -> None:
        document = HEAD + OPEN + b"<note/>" * 10 + CLOSE
        self.assertEqual(len(parse_pidf(document).notes), 10)
        self.assertEqual(self.assertRaises(LimitExceededError, parse_pidf, document, max_elements=5).limit, "max_elements")
        self.assertEqual(self.assertRaises(LimitExceededError, parse_pidf, document, max_depth=1).limit, "max_depth")
        self.assertEqual(self.assertRaises(LimitExceededError, parse_pidf, document, max_size=50).limit, "max_size")


class ProcessingInstructionTests(unittest.TestCase):
    def test_processing_instructions_refused(self) -> None:
        for document in (
            HEAD + b'<?xml-stylesheet href="x.xsl"?>' + OPEN + CLOSE,
            HEAD + OPEN + b"<?php system('x') ?>" + CLOSE,
            HEAD + OPEN + CLOSE + b"<?trailing?>",
        ):
            error = self.assertRaises(PresenceDocumentError, parse_pidf, document)
            self.assertIn("processing instructions", error.reason)

    def test_comments_allowed(self) -> None:
        document = parse_pidf(HEAD + b"<!-- c -->" + OPEN + b"<!-- inside --><note>x</note>" + CLOSE)
        self.assertEqual(document.notes[0].text, "x")

    def test_not_bytes(self) -> None:
        self.assertRaises(PresenceDocumentError, parse_xml, "<a/>")  # type: ignore[arg-type]
        self.assertRaises(PresenceDocumentError, parse_pidf, b"   ")
