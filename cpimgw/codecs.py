"""The core's own native codecs: ``cpim`` (Message/CPIM, RFC 3862) and ``pidf`` (RFC 3863).

They provide :class:`cpimgw.interfaces.INativeCodec` for the ``cpimgw parse``
and ``cpimgw translate`` commands, exactly like the codecs each adapter
plugin ships; ``twisted/plugins/cpimgw_core.py`` registers them as plugins.

- ``cpim``: ``parse`` gives the JSON form of the Message/CPIM object;
  ``to_operation`` gives the RFC 3860 ``message`` operation it describes
  (source = ``From``, destination = the first ``To``, content = the whole
  octets, carried byte for byte); ``from_operation`` gives the Message/CPIM
  octets of a ``Message`` (its content when that is ``message/cpim``, else a
  new Message/CPIM object wrapping the content, RFC 3862 §3).
- ``pidf``: ``parse`` gives the JSON form of the presence document;
  ``to_operation`` a ``Publish`` of the document's entity (RFC 3859 §3,
  relayed unmodified); ``from_operation`` the PIDF octets of a ``Publish`` or
  ``Notify``.

The parsers (:mod:`cpimgw.cpim.message`, :mod:`cpimgw.cpim.pidf`) are
imported when first used, so that scanning plugins stays cheap.
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from cpimgw.cpim.errors import ParseError, URIError
from cpimgw.cpim.operations import MEDIA_CPIM, MEDIA_PIDF, Content, Message, Notify, Operation, Publish
from cpimgw.cpim.uri import CPIMURI, parse_uri
from cpimgw.interfaces import INativeCodec


class OperationNotCarriedError(ParseError):
    """An operation that a format has no way to express (e.g. a ``Subscribe`` as PIDF)."""

    syntax = "translate"


def _address_uri(address: Any, what: str) -> CPIMURI:
    """The ``im:``/``pres:`` URI of a Message/CPIM address (``From``/``To`` value)."""
    uri = getattr(address, "uri", address)
    if isinstance(uri, CPIMURI):
        return uri
    parsed = getattr(address, "parsed", None)
    if isinstance(parsed, CPIMURI):
        return parsed
    if isinstance(uri, str):
        try:
            return parse_uri(uri)
        except URIError as error:
            raise URIError(f"{what} is not an im: or pres: URI: {error.reason}", syntax="message/cpim") from None
    raise URIError(f"{what} has no URI", syntax="message/cpim")


def _read_cpim(data: bytes) -> Any:
    """Parse a Message/CPIM object without honouring ``Require``: parsing or translating is not rendering.

    ``Require`` binds whoever renders the message for a user (RFC 3862
    §3.5): the adapter that writes it into a native form that drops the
    headers (XMPP refuses it there), never the parser or ``cpimgw parse``.
    """
    from cpimgw.cpim.errors import NotUnderstoodError
    from cpimgw.cpim.message import parse_message

    try:
        return parse_message(data)
    except NotUnderstoodError as error:
        return parse_message(data, understood=frozenset(error.names))


@implementer(INativeCodec, IPlugin)
class CPIMCodec:
    """``cpim``: one Message/CPIM object (RFC 3862)."""

    name = "cpim"
    description = "Message/CPIM (RFC 3862)"

    def parse(self, data: bytes) -> dict[str, Any]:
        return _read_cpim(data).to_dict()

    def to_operation(self, data: bytes) -> Message:
        message = _read_cpim(data)
        recipients = list(message.recipients)
        if not recipients:
            raise ParseError("the message has no To header", syntax="message/cpim")
        return Message(
            source=_address_uri(message.sender, "From"),
            destination=_address_uri(recipients[0], "To"),
            content=Content(MEDIA_CPIM, bytes(data)),
        )

    def from_operation(self, operation: Operation) -> bytes:
        if not isinstance(operation, Message):
            raise OperationNotCarriedError(
                f"the cpim format carries only a message operation, not {type(operation).__name__.lower()}"
            )
        content = operation.content
        if content.media_type == MEDIA_CPIM:
            return content.body
        from cpimgw.cpim.message import build_message

        return build_message(
            operation.source,
            [operation.destination],
            content.body,
            content.content_type,
        ).to_bytes()


@implementer(INativeCodec, IPlugin)
class PIDFCodec:
    """``pidf``: one presence document (RFC 3863, with RPID RFC 4480)."""

    name = "pidf"
    description = "PIDF presence document (RFC 3863, RPID RFC 4480)"

    def parse(self, data: bytes) -> dict[str, Any]:
        from cpimgw.cpim.pidf import parse_pidf

        return parse_pidf(data).to_dict()

    def to_operation(self, data: bytes) -> Publish:
        from cpimgw.cpim.pidf import parse_pidf

        document = parse_pidf(data)
        entity = document.entity
        if not isinstance(entity, CPIMURI):
            try:
                entity = parse_uri(str(entity))
            except URIError as error:
                raise URIError(f"the entity is not a pres: or im: URI: {error.reason}", syntax="pidf") from None
        return Publish(presentity=entity, presence=Content(MEDIA_PIDF, bytes(data)))

    def from_operation(self, operation: Operation) -> bytes:
        if not isinstance(operation, (Publish, Notify)) or operation.presence is None:
            raise OperationNotCarriedError(
                f"the pidf format carries only a presence document, not {type(operation).__name__.lower()}"
            )
        return operation.presence.body


def core_codecs() -> tuple[CPIMCodec, PIDFCodec]:
    """The core's codecs, as the plugin module registers them."""
    return CPIMCodec(), PIDFCodec()
