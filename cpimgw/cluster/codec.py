"""The wire form of CPIM operations and responses between gateway nodes (JSON in Redis Streams).

An operation that another node must deliver (RFC 3860 ``message``, RFC 3859
``subscribe``/``notify``) travels as one stream entry; its ``Response``
comes back the same way.  Every field of the values of
:mod:`cpimgw.cpim.operations` is kept: URIs with their headers, contents as
exact octets (base64), enums by value -- so a forwarded operation is the
very operation the first node routed, and nothing of it is lost between
nodes.
"""

from __future__ import annotations

import base64
import enum
import json
from typing import Any

import attrs

from cpimgw.cpim.operations import (
    Condition,
    Content,
    Message,
    Notify,
    Publish,
    Response,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
)
from cpimgw.cpim.uri import CPIMURI

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Message, Subscribe, Notify, Publish, Response)}
_ENUMS: dict[str, type[enum.Enum]] = {cls.__name__: cls for cls in (Status, Condition, SubscriptionState,
                                                                      TerminationReason)}


class CodecError(ValueError):
    """An entry that is not an operation or response of this codec."""


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__name__, "v": value.value}
    if isinstance(value, CPIMURI):
        return {"$uri": [value.scheme, value.user, value.domain, [list(pair) for pair in value.headers]]}
    if isinstance(value, Content):
        return {"$content": [value.media_type, base64.b64encode(bytes(value.body)).decode("ascii"),
                             [list(pair) for pair in value.parameters]]}
    if isinstance(value, (tuple, list)):
        return {"$tuple": [_encode(each) for each in value]}
    raise CodecError(f"cannot encode {type(value).__name__}")


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "$enum" in value:
        cls = _ENUMS.get(value["$enum"])
        if cls is None:
            raise CodecError(f"unknown enum {value['$enum']!r}")
        return cls(value["v"])
    if "$uri" in value:
        scheme, user, domain, headers = value["$uri"]
        return CPIMURI(scheme, user, domain, tuple(tuple(pair) for pair in headers))
    if "$content" in value:
        media_type, body, parameters = value["$content"]
        return Content(media_type, base64.b64decode(body), tuple(tuple(pair) for pair in parameters))
    if "$tuple" in value:
        return tuple(_decode(each) for each in value["$tuple"])
    raise CodecError("unknown object in entry")


def encode(value: Any) -> bytes:
    """An operation or a ``Response`` as JSON octets."""
    cls = type(value)
    if cls.__name__ not in _TYPES or _TYPES[cls.__name__] is not cls:
        raise CodecError(f"not a CPIM operation or response: {cls.__name__}")
    fields = {field.name: _encode(getattr(value, field.name)) for field in attrs.fields(cls)}
    return json.dumps({"type": cls.__name__, "fields": fields}, separators=(",", ":")).encode("utf-8")


def decode(data: bytes | str) -> Any:
    """The operation or ``Response`` of :func:`encode`'s octets.

    :raise CodecError: not such an entry (malformed JSON, unknown type or field).
    """
    try:
        document = json.loads(data)
        cls = _TYPES[document["type"]]
        fields = {name: _decode(value) for name, value in document["fields"].items()}
        return cls(**fields)
    except CodecError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise CodecError(f"not an operation entry: {error}") from None


__all__ = ["encode", "decode", "CodecError"]
