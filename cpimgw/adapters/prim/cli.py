"""The ``cpimgw prim`` subcommand: a PRIM user agent for people and scripts.

Logs in to a PRIM server (a cpimgw PRIM adapter's user-agent listener, or any
PRIM server) with :class:`~cpimgw.adapters.prim.client.PrimClient`, does one
action and prints what arrives::

    cpimgw prim --server 127.0.0.1:5781 --user alice@prim.localhost listen --wait 0
    cpimgw prim --server 127.0.0.1:5781 --user alice@prim.localhost send im:romeo@xmpp.localhost "hello"
    cpimgw prim ... subscribe pres:romeo@xmpp.localhost --duration 3600 --wait 30
    cpimgw prim ... publish open --note "at my desk"

The password comes from ``--password`` or the ``CPIMGW_PRIM_PASSWORD``
environment variable.  The CLI engineer wires :func:`register` into the
``cpimgw`` parser; the parsed arguments carry ``run`` (``args.run(args)``).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, TextIO

from twisted.internet import defer

from cpimgw.adapters.prim import wire

EXIT_OK = 0
EXIT_ERROR = 2


def register(subparsers: Any, **parser_kwargs: Any) -> Any:
    """Add the ``prim`` subcommand to an argparse ``subparsers``; return its parser.

    ``parser_kwargs`` are passed to every ``add_parser`` call (e.g. the streams
    of the ``cpimgw`` parser class).
    """
    parser = subparsers.add_parser("prim", help="act as a PRIM user agent (log in, send, subscribe, publish, listen)",
                                   **parser_kwargs)
    parser.add_argument("--server", default="127.0.0.1:5781", metavar="HOST:PORT",
                        help="the PRIM server's user-agent address (default 127.0.0.1:5781)")
    parser.add_argument("--user", required=True, metavar="USER@DOMAIN", help="the PRIM principal to log in as")
    parser.add_argument("--password", default=None, help="the pass phrase (default: $CPIMGW_PRIM_PASSWORD)")
    parser.add_argument("--mechanism", default="CRAM-MD5", choices=["CRAM-MD5", "PLAIN", "EXTERNAL"],
                        help="SASL mechanism (PLAIN needs --tls)")
    parser.add_argument("--tls", action="store_true", help="STARTTLS before LOGIN")
    parser.add_argument("--ca", default=None, metavar="FILE", help="PEM CA certificate to verify the server with")
    parser.add_argument("--server-name", default=None, metavar="NAME",
                        help="the name the server certificate must carry (default: the user's domain)")
    actions = parser.add_subparsers(dest="prim_action", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("listen", help="open the inbox and print what arrives", **parser_kwargs)
    p.add_argument("--wait", type=float, default=0, help="seconds to listen (0: until interrupted)")
    p = actions.add_parser("send", help="send one instant message", **parser_kwargs)
    p.add_argument("to", metavar="TO", help="im:user@domain")
    p.add_argument("text", metavar="TEXT", help="the message text")
    p.add_argument("--content-type", default="text/plain; charset=UTF-8")
    p.add_argument("--wait", type=float, default=0, help="then listen this many seconds for replies")
    p = actions.add_parser("subscribe", help="subscribe to a presentity and print its notifications", **parser_kwargs)
    p.add_argument("target", metavar="TARGET", help="pres:user@domain")
    p.add_argument("--duration", type=int, default=3600)
    p.add_argument("--wait", type=float, default=10, help="seconds to print notifications (0: until interrupted)")
    p = actions.add_parser("publish", help="publish one presence tuple", **parser_kwargs)
    p.add_argument("status", choices=["open", "closed"])
    p.add_argument("--note", default=None)
    p.add_argument("--tuple-id", default="cli")
    p.add_argument("--wait", type=float, default=0, help="then stay logged in this many seconds")
    parser.set_defaults(run=run)
    return parser


def describe(request: wire.Request) -> str:
    """One line for what the server sent."""
    if request.method == "SEND":
        text = request.body.decode("utf-8", "replace")
        if (request.header("Content-Type") or "").lower().startswith("message/cpim"):
            end = text.find("\r\n\r\n")  # Message/CPIM headers, then the content's headers, then the text
            inner = text[end + 4:] if end != -1 else text
            inner_end = inner.find("\r\n\r\n")
            text = inner[inner_end + 4:] if inner_end != -1 else inner
        return f"message from {request.header('From')}: {text}"
    if request.method == "NOTIFY":
        from cpimgw.adapters.prim.presence_doc import basic_status

        status = basic_status(request.body) if request.body else None
        ended = " (subscription ended)" if request.header("Duration") == "0" else ""
        return f"presence of {request.header('From')}: {status or 'unknown'}{ended}"
    if request.method == "WATCHERNOTIFY":
        return f"watcher {request.header('From')} ({request.header('Watcher-Type')})"
    return f"{request.method} from {request.header('From')}"


def _tls_options(args: Any, domain: str) -> Any:
    if not args.tls:
        return None
    from twisted.internet import ssl

    kwargs: dict[str, Any] = {}
    if args.ca:
        with open(args.ca, "rb") as handle:
            kwargs["trustRoot"] = ssl.Certificate.loadPEM(handle.read())
    return ssl.optionsForClientTLS(args.server_name or domain, **kwargs)


@defer.inlineCallbacks
def session(reactor: Any, args: Any, out: TextIO):  # type: ignore[no-untyped-def]
    """Run one ``cpimgw prim`` invocation on ``reactor``; ``Deferred[int]`` exit status."""
    from cpimgw.adapters.prim.client import PrimClient, PrimClientError

    host, _, port_text = args.server.rpartition(":")
    if not host or not port_text.isdigit():
        out.write(f"cpimgw prim: --server must be HOST:PORT, got {args.server!r}\n")
        return EXIT_ERROR
    password = args.password if args.password is not None else os.environ.get("CPIMGW_PRIM_PASSWORD")
    domain = args.user.rpartition("@")[2]
    client = PrimClient(reactor, args.user, password, mechanism=args.mechanism, tls_options=_tls_options(args, domain))
    client.on_request = lambda request: out.write(describe(request) + "\n")
    try:
        yield client.connect(host, int(port_text))
        out.write(f"logged in as {client.im} (user agent {client.user_agent_id})\n")
        action = args.prim_action
        if action in ("listen", "send"):
            yield client.listen()
        if action == "send":
            answer = yield client.send(args.to, args.text.encode("utf-8"), args.content_type, ok=range(100, 600))
            out.write(f"SEND answered {answer.code} {answer.reason}\n")
            if answer.code not in (200, 101):
                return EXIT_ERROR
        elif action == "subscribe":
            answer = yield client.subscribe(args.target, args.duration)
            out.write(f"SUBSCRIBE answered {answer.code} {answer.reason} (Duration {answer.header('Duration')})\n")
        elif action == "publish":
            answer = yield client.publish_status(args.status, note=args.note, tuple_id=args.tuple_id)
            out.write(f"PUBLISH answered {answer.code} {answer.reason}\n")
        wait = getattr(args, "wait", 0)
        if wait or action == "listen":
            done: defer.Deferred = defer.Deferred()
            if wait:
                reactor.callLater(wait, lambda: done.called or done.callback(None))
            client.closed.addBoth(lambda _: done.called or done.callback(None))
            yield done
        yield client.logout()
        return EXIT_OK
    except PrimClientError as error:
        out.write(f"cpimgw prim: {error}\n")
        client.protocol.close()
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the command reports, never a traceback
        out.write(f"cpimgw prim: {type(error).__name__}: {error}\n")
        client.protocol.close()
        return EXIT_ERROR


def run(args: Any, out: Optional[TextIO] = None) -> int:
    """Run ``cpimgw prim`` on the global reactor until done; the exit status."""
    from twisted.internet import reactor

    stream = out if out is not None else sys.stdout
    result: list[int] = []

    def finished(status: Any) -> None:
        result.append(status if isinstance(status, int) else EXIT_ERROR)
        reactor.stop()

    reactor.callWhenRunning(lambda: session(reactor, args, stream).addBoth(finished))
    reactor.run(installSignalHandlers=True)
    return result[0] if result else EXIT_ERROR
