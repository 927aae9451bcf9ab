"""A restricted, bounded XML stream parser for every XMPP stream of the gateway.

Twisted's ``domish.ExpatElementStream`` accepts DOCTYPEs and internal entities
and appends character data with a quadratic string concatenation
(perf-reliability.md §B1: a 643-byte entity bomb costs ~50 s of CPU, 2 MiB of
newlines ~150 s).  :class:`HardenedElementStream` replaces it:

* RFC 6120 §11.1 restricted XML: a DOCTYPE, an entity declaration, a comment
  or a processing instruction ends the stream with ``<restricted-xml/>`` at
  first sight (expat handlers raise before anything is expanded);
* expat's ``buffer_text`` is on, and text is gathered in a list and joined
  once per element, so character data costs linear time;
* the input is fed in slices of :data:`FEED_CHUNK` octets and the stanza size
  is checked after each slice: a stanza over ``max_stanza_size`` (64 KiB by
  default, RFC 6120 §13.12) ends the stream with ``<policy-violation/>``
  after at most one slice of extra work; depth and element count are capped
  the same way;
* malformed XML and undeclared prefixes end it with ``<not-well-formed/>``.

:class:`HardenedXmlStream` is the ``XmlStream`` both the component and the
s2s connections use: it installs the parser, turns a parser rejection into
the stream error, a log line and a counter, sets ``TCP_NODELAY`` on its
socket, and throttles reading with a token bucket (``max_rate`` octets per
second) so a fast sender is slowed down, not buffered.
"""

from __future__ import annotations

import collections
import pyexpat
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error as jabber_error
from twisted.words.protocols.jabber import xmlstream as jabber_xmlstream
from twisted.words.xish import domish
from twisted.words.xish.xmlstream import STREAM_ERROR_EVENT

from cpimgw import metrics
from cpimgw.limits import TokenBucket  # re-exported: the bucket moved to the core

log = Logger()

#: The RFC 6120 §4.9.3 stream error conditions that mean the peer sent malformed XML (counted as parse errors).
PARSE_CONDITIONS = frozenset({"not-well-formed", "restricted-xml", "invalid-xml", "bad-format", "invalid-namespace"})

#: Octets handed to expat at a time; the size cap is checked after each slice.
FEED_CHUNK = 4096


@attrs.frozen
class StreamLimits:
    """The limits of one XML stream (all explicit, with defaults).

    :ivar max_stanza_size: octets from the end of one stanza to the end of the
        next (the stream header counts towards the first); RFC 6120 §13.12
        forbids less than 10000.
    :ivar max_depth: element nesting depth inside a stanza.
    :ivar max_elements: elements in one stanza.
    :ivar max_rate: octets per second read from the peer (0: unlimited).
    :ivar burst: octets the peer may send at once before ``max_rate`` applies.
    """

    max_stanza_size: int = attrs.field(default=65536)
    max_depth: int = 64
    max_elements: int = 5000
    max_rate: int = 0
    burst: int = 262144

    @max_stanza_size.validator
    def _check_size(self, attribute: Any, value: int) -> None:
        if not isinstance(value, int) or value < 10000:
            raise ValueError("max_stanza_size must be an integer of at least 10000 (RFC 6120 §13.12)")


class StreamRejected(domish.ParserError):
    """The stream must end with the stream error ``condition`` (RFC 6120 §4.9.3)."""

    def __init__(self, condition: str, reason: str) -> None:
        self.condition = condition
        self.reason = reason
        super().__init__(f"{condition}: {reason}")


class HardenedElementStream(domish.ExpatElementStream):
    """``ExpatElementStream`` with restricted XML, linear text and hard caps."""

    def __init__(self, limits: StreamLimits = StreamLimits()) -> None:
        super().__init__()
        self.limits = limits
        self.maxStanzaSize = limits.max_stanza_size
        self.maxElementCount = limits.max_elements
        parser = self.parser
        parser.buffer_text = True
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._on_doctype
        parser.EntityDeclHandler = self._on_entity
        parser.CommentHandler = self._on_comment
        parser.ProcessingInstructionHandler = self._on_pi
        self._text: list[str] = []
        self._fed = 0
        self._stanza_start = 0
        self._depth = 0

    # -- restricted XML (RFC 6120 §11.1) --------------------------------

    def _on_doctype(self, *args: object) -> None:
        raise StreamRejected("restricted-xml", "a DOCTYPE is not allowed in an XMPP stream")

    def _on_entity(self, *args: object) -> None:
        raise StreamRejected("restricted-xml", "an entity declaration is not allowed in an XMPP stream")

    def _on_comment(self, data: str) -> None:
        raise StreamRejected("restricted-xml", "a comment is not allowed in an XMPP stream")

    def _on_pi(self, target: str, data: str) -> None:
        raise StreamRejected("restricted-xml", "a processing instruction is not allowed in an XMPP stream")

    # -- feeding with a byte cap ----------------------------------------

    @property
    def stanza_bytes(self) -> int:
        """Octets fed since the end of the last complete stanza."""
        return self._fed - self._stanza_start

    def parse(self, buffer: bytes) -> None:
        for start in range(0, len(buffer), FEED_CHUNK):
            piece = buffer[start : start + FEED_CHUNK]
            self._fed += len(piece)
            try:
                self.parser.Parse(piece)
            except self.error as error:
                raise StreamRejected("not-well-formed", str(error)) from None
            if self.stanza_bytes > self.limits.max_stanza_size:
                raise StreamRejected(
                    "policy-violation", f"stanza larger than {self.limits.max_stanza_size} octets"
                )

    # -- linear text, depth ---------------------------------------------

    def _flush_text(self) -> None:
        if self._text:
            text = "".join(self._text)
            self._text = []
            if self.currElem is not None:
                self.currElem.addContent(text)

    def _onStartElement(self, name: str, attrs: dict) -> None:  # noqa: N802 - Twisted's name
        self._flush_text()
        self._depth += 1
        if self._depth > self.limits.max_depth + 1:  # +1: the stream root
            raise StreamRejected("policy-violation", f"elements nested deeper than {self.limits.max_depth}")
        try:
            super()._onStartElement(name, attrs)
        except domish.ParserError as error:
            raise StreamRejected("policy-violation", str(error)) from None

    def _onEndElement(self, name: str) -> None:  # noqa: N802 - Twisted's name
        self._flush_text()
        self._depth -= 1
        top_level = self.currElem is not None and self.currElem.parent is None
        super()._onEndElement(name)
        if top_level:
            self._stanza_start = self.parser.CurrentByteIndex

    def _onCdata(self, data: str) -> None:  # noqa: N802 - Twisted's name
        if self.currElem is not None:
            self._text.append(data)


class StreamStats:
    """Counters shared by the streams of one adapter (rejections by condition, streams)."""

    def __init__(self) -> None:
        self.rejected: collections.Counter[str] = collections.Counter()
        self.streams_opened = 0
        self.throttled = 0


class HardenedXmlStream(jabber_xmlstream.XmlStream):
    """The jabber ``XmlStream`` with :class:`HardenedElementStream` and limits.

    The limits, counters and clock come from the factory when it has
    ``stream_limits``/``stream_stats``/``clock`` attributes (see
    :func:`harden_factory`), else from the class defaults.
    """

    limits = StreamLimits()
    stats: StreamStats | None = None
    clock: IReactorTime | None = None
    #: ``clock.seconds()`` when data last came in or a stanza went out (with a clock).
    last_activity = 0.0
    _rejected = False
    _bucket: TokenBucket | None = None
    _resume_call: Any = None

    def _settings(self) -> None:
        factory = getattr(self, "factory", None)
        self.limits = getattr(factory, "stream_limits", None) or self.limits
        self.stats = getattr(factory, "stream_stats", None) or self.stats
        self.clock = getattr(factory, "clock", None) or self.clock

    def _initializeStream(self) -> None:  # noqa: N802 - Twisted's name
        self.stream = HardenedElementStream(self.limits)
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self._settings()
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        if self.limits.max_rate > 0:
            if self.clock is None:
                from twisted.internet import reactor as clock

                self.clock = clock  # type: ignore[assignment]
            self._bucket = TokenBucket(self.limits.max_rate, self.limits.burst, self.clock)
        if self.stats is not None:
            self.stats.streams_opened += 1
        if self.clock is not None:
            self.last_activity = self.clock.seconds()
        super().connectionMade()

    def send(self, obj: Any) -> None:
        if self.clock is not None:
            self.last_activity = self.clock.seconds()
        super().send(obj)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self._rejected or self.stream is None:
            return
        if self.clock is not None:
            self.last_activity = self.clock.seconds()
        try:
            if self.rawDataInFn:
                self.rawDataInFn(data)
            self.stream.parse(data)
        except StreamRejected as error:
            self.reject(error.condition, error.reason)
            return
        except domish.ParserError as error:
            self.reject("not-well-formed", str(error))
            return
        if self._bucket is not None:
            wait = self._bucket.take(len(data))
            if wait > 0 and self.transport is not None and self._resume_call is None:
                self.transport.pauseProducing()
                if self.stats is not None:
                    self.stats.throttled += 1
                self._resume_call = self.clock.callLater(wait, self._resume)  # type: ignore[union-attr]

    def _resume(self) -> None:
        self._resume_call = None
        if self.transport is not None and not self._rejected:
            self.transport.resumeProducing()

    def reject(self, condition: str, reason: str) -> None:
        """End the stream with the stream error ``condition``; log and count it."""
        if self._rejected:
            return
        self._rejected = True
        peer = self.transport.getPeer() if self.transport is not None else None
        log.warn(
            "XMPP stream from {peer} rejected with <{condition}/>: {reason}",
            peer=peer,
            condition=condition,
            reason=reason,
        )
        if self.stats is not None:
            self.stats.rejected[condition] += 1
        if condition in PARSE_CONDITIONS:
            metrics.parse_error("xmpp")
        stream_error = jabber_error.StreamError(condition, reason)
        self.dispatch(failure.Failure(stream_error), STREAM_ERROR_EVENT)
        self.sendStreamError(stream_error)

    def connectionLost(self, reason: failure.Failure) -> None:  # noqa: N802 - Twisted's name
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._resume_call = None
        super().connectionLost(reason)


def harden_factory(
    factory: Any,
    limits: StreamLimits = StreamLimits(),
    stats: StreamStats | None = None,
    clock: IReactorTime | None = None,
) -> Any:
    """Make ``factory`` (an ``XmlStreamFactory`` or server factory) build :class:`HardenedXmlStream`."""
    factory.protocol = HardenedXmlStream
    factory.stream_limits = limits
    factory.stream_stats = stats
    if clock is not None and getattr(factory, "clock", None) is None:
        factory.clock = clock
    return factory
