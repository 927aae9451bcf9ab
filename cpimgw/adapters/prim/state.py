"""What the PRIM adapter keeps across restarts, as store values (pure encoding, no I/O).

The adapter's own state lives in the store's generic key/value space
(``IStore.put_value`` / ``get_values``), one scope per kind:

=====================  ===========================  ==============================================
scope                  key                          value
=====================  ===========================  ==============================================
``prim.acl``           ``user@domain``              the ACL document (-01 §11.3, SETACL)
``prim.classtable``    ``user@domain``              the class table document (-01 §11.4)
``prim.tuple``         ``user@domain`` LF tuple-id  the tuple's permanent and leased values (JSON,
                                                    -01 §11.2 lease model); expires with the lease
                                                    when there is no permanent value
``prim.unsubscribe``   watcher LF target            the Subscription-ID an UNSUBSCRIBE / a
                                                    CANCELSUBSCRIPTION needs (server-00 §7.1.2);
                                                    expires with the subscription
=====================  ===========================  ==============================================

ACLs and class tables are stored as the XML the adapter serialises them to
(:meth:`~cpimgw.adapters.prim.acl.AccessList.to_xml`), parsed back with the same
limits as SETACL.  Presence bodies are kept byte for byte (base64 in JSON).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Optional

import attrs

from cpimgw.cpim.errors import ParseError
from cpimgw.cpim.operations import Content

SCOPE_ACL = "prim.acl"
SCOPE_CLASS_TABLE = "prim.classtable"
SCOPE_TUPLE = "prim.tuple"
SCOPE_UNSUBSCRIBE = "prim.unsubscribe"

Value = Optional[tuple[Content, tuple[str, ...]]]


def principal_key(principal: tuple[str, str]) -> str:
    """``user@domain`` of a (user, domain) principal."""
    return f"{principal[0]}@{principal[1]}"


def principal_of(key: str) -> tuple[str, str]:
    """The (user, domain) principal of a :func:`principal_key`."""
    user, at, domain = key.rpartition("@")
    if not at or not user or not domain:
        raise ParseError(f"stored PRIM principal {key[:80]!r} is not user@domain")
    return user, domain


def tuple_key(principal: tuple[str, str], tuple_id: str) -> str:
    return f"{principal_key(principal)}\n{tuple_id}"


def split_tuple_key(key: str) -> tuple[tuple[str, str], str]:
    who, newline, tuple_id = key.partition("\n")
    if not newline or not tuple_id:
        raise ParseError(f"stored PRIM tuple key {key[:80]!r} has no tuple id")
    return principal_of(who), tuple_id


def pair_key(pair: tuple[str, str]) -> str:
    return f"{pair[0]}\n{pair[1]}"


def split_pair_key(key: str) -> tuple[str, str]:
    watcher, newline, target = key.partition("\n")
    if not newline or not watcher or not target:
        raise ParseError(f"stored PRIM subscription key {key[:80]!r} is not watcher LF target")
    return watcher, target


@attrs.frozen
class StoredTuple:
    """One tuple's values as stored: permanent, leased, and when the lease ends (reactor seconds)."""

    permanent: Value = None
    leased: Value = None
    lease_until: Optional[float] = None


def _encode_value(value: Value) -> Optional[dict[str, Any]]:
    if value is None:
        return None
    content, classes = value
    return {
        "type": content.media_type,
        "params": [list(pair) for pair in content.parameters],
        "body": base64.b64encode(content.body).decode("ascii"),
        "classes": list(classes),
    }


def _decode_value(data: Any) -> Value:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ParseError("stored PRIM tuple value is not an object")
    try:
        content = Content(str(data["type"]), base64.b64decode(data["body"], validate=True),
                          tuple((str(k), str(v)) for k, v in data.get("params", ())))
        classes = tuple(str(c) for c in data.get("classes", ()))
    except (KeyError, TypeError, ValueError) as error:
        raise ParseError(f"stored PRIM tuple value is malformed: {error}") from None
    return content, classes


def encode_tuple(stored: StoredTuple) -> bytes:
    """The store value of one tuple (JSON, UTF-8)."""
    return json.dumps({
        "permanent": _encode_value(stored.permanent),
        "leased": _encode_value(stored.leased),
        "lease_until": stored.lease_until,
    }, sort_keys=True).encode("utf-8")


def decode_tuple(data: bytes) -> StoredTuple:
    """Inverse of :func:`encode_tuple`; :class:`ParseError` for anything else."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ParseError(f"stored PRIM tuple is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ParseError("stored PRIM tuple is not an object")
    until = document.get("lease_until")
    if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))):
        raise ParseError("stored PRIM tuple lease_until is not a number")
    return StoredTuple(_decode_value(document.get("permanent")), _decode_value(document.get("leased")),
                       None if until is None else float(until))


def tuple_expiry(stored: StoredTuple) -> Optional[float]:
    """When the stored value may disappear: never while a permanent value exists, else with the lease."""
    if stored.permanent is not None:
        return None
    return stored.lease_until


__all__ = [
    "SCOPE_ACL", "SCOPE_CLASS_TABLE", "SCOPE_TUPLE", "SCOPE_UNSUBSCRIBE", "StoredTuple",
    "principal_key", "principal_of", "tuple_key", "split_tuple_key", "pair_key", "split_pair_key",
    "encode_tuple", "decode_tuple", "tuple_expiry",
]
