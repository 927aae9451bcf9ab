"""Log lines an operator can search: ``twisted.logger`` events as one JSON object per line.

With ``[gateway] log_format = "json"`` every event twistd writes to its log
file (or to standard output under ``--nodaemon`` without ``--logfile``, i.e.
to journald under systemd) becomes one line holding one JSON object
(RFC 8259), e.g.::

    {"time": "2026-12-04T17:50:01.123456Z", "level": "warn", "namespace": "cpimgw.adapters.prim.server",
     "event": "prim.login.failed", "message": "PRIM LOGIN failed for carol@prim.localhost from ...",
     "account": "carol@prim.localhost", "peer": "127.0.0.1:40122", "protocol": "prim",
     "condition": "not-authorized"}

- ``event`` is the stable name of what happened: the ``event`` field of the
  log call when it gave one (``prim.login.failed``, ``config.reloaded``...),
  otherwise the emitting namespace;
- ``message`` is the formatted text (what the text format shows);
- every other field of the log call follows, as JSON values (anything else
  as its ``repr``); a failure's traceback is in ``failure``.

No secret is ever written: a field whose name says it holds one
(:data:`SECRET_WORDS`) is replaced by ``"<redacted>"`` in both formats'
fields, whatever the caller passed.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import FileLogObserver, formatEvent

#: Words that mark a field name as holding a secret (matched case-insensitively, anywhere in the name).
SECRET_WORDS = ("secret", "password", "passwd", "passphrase", "private_key", "privatekey", "token", "credential",
                "authorization", "sasl_response", "digest_response")

_SECRET_NAME = re.compile("|".join(re.escape(word) for word in SECRET_WORDS), re.I)

REDACTED = "<redacted>"

#: twisted.logger's own bookkeeping fields, not copied into the JSON object.
_INTERNAL = {"log_logger", "log_source", "log_io", "log_text", "log_format", "log_level", "log_namespace",
             "log_time", "log_failure", "log_trace", "log_observer", "log_legacy", "format", "message", "isError",
             "time", "system", "why", "failure", "log_system", "log_flattened", "event"}


def is_secret_name(name: str) -> bool:
    """Whether a field called ``name`` holds a secret (and must never be logged)."""
    return bool(_SECRET_NAME.search(name))


def _jsonable(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > 4:
        return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {str(k): (REDACTED if is_secret_name(str(k)) else _jsonable(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, (str, int)) and type(value).__module__ != "builtins" and hasattr(type(value), "__members__"):
        return enum_value
    host = getattr(value, "host", None)
    port = getattr(value, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(value)


def peer_text(transport: Any) -> str:
    """The far end of ``transport`` as ``host:port`` (``[v6]:port``), or ``?`` -- the ``peer`` field of log events."""
    try:
        address = transport.getPeer()
    except Exception:  # noqa: BLE001 - no transport, or one without an IP peer
        return "?"
    return _jsonable(address) if getattr(address, "host", None) is not None else str(address)


def redact(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with every secret-named field replaced by ``"<redacted>"`` (a copy when anything changed)."""
    names = [name for name in event if not name.startswith("log_") and is_secret_name(name)]
    if not names:
        return event
    event = dict(event)
    for name in names:
        event[name] = REDACTED
    return event


def event_as_json(event: dict[str, Any]) -> str:
    """One log event as one line of JSON (newline-terminated)."""
    event = redact(event)
    level = event.get("log_level")
    when = event.get("log_time")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if when is not None else None,
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "event": event.get("event") if isinstance(event.get("event"), str) else event.get("log_namespace", ""),
    }
    try:
        text = formatEvent(event)
    except Exception:  # noqa: BLE001 - a broken format string must not lose the event
        text = str(event.get("log_format", ""))
    record["message"] = text
    for name, value in event.items():
        if name in _INTERNAL or name.startswith("log_") or name in record:
            continue
        record[name] = _jsonable(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["failure"] = failure.getTraceback()
        except Exception:  # noqa: BLE001
            record["failure"] = repr(failure)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class RedactingObserver:
    """Hands every event to ``observer`` with its secret-named fields redacted (for the text format too)."""

    def __init__(self, observer: Any) -> None:
        self.observer = observer

    def __call__(self, event: dict[str, Any]) -> None:
        self.observer(redact(event))


def json_file_observer(out: IO[str]) -> FileLogObserver:
    """An observer writing every event to ``out`` as one JSON object per line."""
    return FileLogObserver(out, event_as_json)


def use_redaction(publisher: Any) -> list[tuple[Any, Any]]:
    """Wrap every observer of ``publisher`` in a :class:`RedactingObserver`; the pairs, for :func:`restore`."""
    replaced = []
    for observer in list(getattr(publisher, "_observers", ())):
        if isinstance(observer, RedactingObserver):
            continue
        replacement = RedactingObserver(observer)
        publisher.removeObserver(observer)
        publisher.addObserver(replacement)
        replaced.append((observer, replacement))
    return replaced


def use_json_format(publisher: Any) -> list[tuple[Any, Any]]:
    """Turn every text file observer of ``publisher`` into a JSON one writing to the same file.

    :return: the (original, replacement) pairs, for :func:`restore`.
    """
    replaced = []
    for observer in list(getattr(publisher, "_observers", ())):
        out = getattr(observer, "_outFile", None)
        if not isinstance(observer, FileLogObserver) or out is None:
            continue
        replacement = json_file_observer(out)
        publisher.removeObserver(observer)
        publisher.addObserver(replacement)
        replaced.append((observer, replacement))
    return replaced


def restore(publisher: Any, replaced: list[tuple[Any, Any]]) -> None:
    """Undo :func:`use_json_format` / :func:`use_redaction` (the pairs undone last first)."""
    for original, replacement in reversed(replaced):
        publisher.removeObserver(replacement)
        publisher.addObserver(original)


__all__ = ["REDACTED", "SECRET_WORDS", "RedactingObserver", "event_as_json", "is_secret_name", "json_file_observer",
           "peer_text", "redact", "restore", "use_json_format", "use_redaction"]
