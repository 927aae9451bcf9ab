"""``cpimgw cluster status``: the nodes of a cluster as Redis sees them.

For every node registered under the configured store prefix: whether it is
up (its heartbeat key lives), has left cleanly, or is dead; its age and the
age of its last heartbeat; the connections it holds (``P held:<id>``); the
leases it holds (the expiry sweep, XEP-0114 components); and its stream's
backlog -- entries not yet read by the node (the consumer group's ``lag``)
and entries read but not yet acknowledged (``XPENDING``), which a survivor
claims should the node die.  ``--json`` prints the same as JSON.

Reads only; it never changes what it looks at.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional, TextIO

from twisted.internet.defer import inlineCallbacks

EXIT_OK = 0
EXIT_ERROR = 2
SHOWN_HOLDINGS = 5


def register(subparsers: Any, **parser_kwargs: Any) -> Any:
    """Add ``cluster status`` to an argparse ``subparsers``."""
    parser = subparsers.add_parser("cluster", help="the nodes of a Redis cluster of gateways", **parser_kwargs)
    actions = parser.add_subparsers(dest="cluster_action", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("status", help="nodes, their age, what each holds, stream backlogs", **parser_kwargs)
    p.add_argument("--config", "-c", default=None, metavar="FILE",
                   help='the gateway configuration ([store] kind = "redis", url, prefix)')
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)
    return parser


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _pairs(flat: Any) -> dict[str, Any]:
    items = list(flat or ())
    return {_text(items[i]): items[i + 1] for i in range(0, len(items), 2)}


@inlineCallbacks
def gather(store: Any, now: Optional[float] = None):  # type: ignore[no-untyped-def]
    """``Deferred[dict]``: the cluster view of an open :class:`~cpimgw.store.redis.RedisStore`."""
    from cpimgw.cluster.node import GROUP

    now = time.time() if now is None else now
    command = store.command
    nodes = {}
    registered = _pairs((yield command("HGETALL", store.key("nodes"))))
    lease_keys = yield command("KEYS", store.key("lease:*"))
    leases: dict[str, list[str]] = {}
    for key in lease_keys or ():
        holder = yield command("GET", _text(key))
        if holder is not None:
            leases.setdefault(_text(holder), []).append(_text(key)[len(store.key("lease:")):])
    for node_id in sorted(registered):
        try:
            description = json.loads(_text(registered[node_id]))
        except ValueError:
            description = {}
        alive = bool(int((yield command("EXISTS", store.key("node:", node_id)))))
        state = "up" if alive else ("left" if description.get("state") == "left" else "dead")
        held = sorted(_text(each) for each in ((yield command("SMEMBERS", store.key("held:", node_id))) or ()))
        stream = store.key("stream:", node_id)
        length = int((yield command("XLEN", stream)) or 0)
        pending = lag = 0
        if length:
            try:
                summary = yield command("XPENDING", stream, GROUP)
                pending = int(summary[0] or 0) if summary else 0
                for group in (yield command("XINFO", "GROUPS", stream)) or ():
                    info = _pairs(group)
                    if _text(info.get("name", b"")) == GROUP and info.get("lag") is not None:
                        lag = int(_text(info["lag"]))
            except Exception:  # noqa: BLE001 - a stream without the group: nothing read yet
                lag = length
        nodes[node_id] = {
            "state": state, "host": description.get("host"), "pid": description.get("pid"),
            "age": round(now - float(description.get("started") or now), 1),
            "last_beat": round(now - float(description.get("beat") or now), 1),
            "holds": held, "leases": sorted(leases.get(node_id, [])),
            "stream": {"length": length, "unread": lag, "pending": pending},
        }
    counts = yield store.counts()
    return {"prefix": store.prefix, "nodes": nodes, "store": counts}


def render(view: dict[str, Any]) -> str:
    """The text form of :func:`gather`'s view."""
    lines = [f"cluster under prefix {view['prefix']!r}: {len(view['nodes'])} node(s); "
             f"store: {', '.join(f'{k} {v}' for k, v in sorted(view['store'].items()))}"]
    for node_id, node in view["nodes"].items():
        stream = node["stream"]
        lines.append(f"  {node_id}  {node['state']}  age {node['age']:g} s  last beat {node['last_beat']:g} s ago"
                     f"  pid {node['pid']} on {node['host']}")
        lines.append(f"    stream: {stream['length']} entries, {stream['unread']} unread, "
                     f"{stream['pending']} pending")
        if node["leases"]:
            lines.append(f"    leases: {', '.join(node['leases'])}")
        holds = node["holds"]
        shown = ", ".join(holds[:SHOWN_HOLDINGS]) + (f" (+{len(holds) - SHOWN_HOLDINGS} more)"
                                                       if len(holds) > SHOWN_HOLDINGS else "")
        lines.append(f"    holds {len(holds)}: {shown}" if holds else "    holds nothing")
    return "\n".join(lines) + "\n"


def run(args: Any, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run ``cpimgw cluster status`` on the global reactor; the exit status."""
    from twisted.internet import reactor

    from cpimgw.config import load_config
    from cpimgw.cpim.errors import ConfigError
    from cpimgw.store.redis import RedisStore

    stream = out if out is not None else sys.stdout
    errors = err if err is not None else sys.stderr
    try:
        config = load_config(args.config)
    except ConfigError as error:
        errors.write(f"cpimgw: {error}\n")
        return EXIT_ERROR
    if config.store.kind != "redis":
        errors.write(f'cpimgw: {config.path or "the built-in configuration"}: store.kind is '
                     f'"{config.store.kind}": a cluster needs [store] kind = "redis"\n')
        return EXIT_ERROR
    store = RedisStore(config.store.url, prefix=config.store.prefix, connect_timeout=5.0)
    result: list[int] = []

    @inlineCallbacks
    def session():  # type: ignore[no-untyped-def]
        yield store.open()
        try:
            view = yield gather(store)
        finally:
            yield store.close()
        stream.write(json.dumps(view, indent=1, sort_keys=True) + "\n" if args.json else render(view))
        return EXIT_OK

    def finished(outcome: Any) -> None:
        if isinstance(outcome, int):
            result.append(outcome)
        else:
            errors.write(f"cpimgw: cluster status: {outcome.getErrorMessage()}\n")
            result.append(EXIT_ERROR)
        reactor.stop()

    reactor.callWhenRunning(lambda: session().addBoth(finished))
    reactor.run(installSignalHandlers=False)
    return result[0] if result else EXIT_ERROR


__all__ = ["register", "gather", "render", "run"]
