"""A small XMPP user for the README walkthrough: log in with slixmpp, act, print what arrives.

    python -m tests.e2e.xmpp_user alice@xmpp.localhost/desk alicepw \\
        --subscribe 'bob\\40sip.localhost@gw.localhost' \\
        --send 'carol\\40prim.localhost@gw.localhost' 'Hello Carol' --show away --status 'in a meeting' --wait 60

Loopback without TLS (the walkthrough's Prosody, conf/peers/prosody.cfg.lua):
plain SCRAM over TCP is allowed explicitly.  Subscription requests are
approved automatically.  Every message and presence received is printed as
one line.  RFC 6120/6121 through slixmpp (asyncio, its own event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.xmpp_user", description=__doc__.split("\n\n")[0])
    parser.add_argument("jid", help="user@domain/resource")
    parser.add_argument("password")
    parser.add_argument("--server", default="127.0.0.1:5222", metavar="HOST:PORT")
    parser.add_argument("--subscribe", action="append", default=[], metavar="JID", help="ask to see JID's presence")
    parser.add_argument("--send", nargs=2, action="append", default=[], metavar=("JID", "TEXT"))
    parser.add_argument("--show", default=None, choices=["away", "chat", "dnd", "xa"], help="presence <show/>")
    parser.add_argument("--status", default=None, help="presence status text")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to stay online printing what arrives")
    args = parser.parse_args(argv)

    import slixmpp

    out = sys.stdout
    client = slixmpp.ClientXMPP(args.jid, args.password, plugin_config={
        "feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}})
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.enable_plaintext = True
    client.auto_authorize = True
    client.auto_subscribe = False
    done = asyncio.Event()

    async def on_start(_: Any) -> None:
        client.send_presence()
        await client.get_roster()
        for jid in args.subscribe:
            client.send_presence(pto=jid, ptype="subscribe")
        for jid, text in args.send:
            client.send_message(mto=jid, mbody=text, mtype="chat")
            print(f"sent to {jid}: {text}", file=out, flush=True)
        if args.show or args.status:
            await asyncio.sleep(1.0)  # let subscriptions settle, then change presence
            client.send_presence(pshow=args.show, pstatus=args.status)
            print(f"presence now {args.show or 'available'}: {args.status or ''}", file=out, flush=True)
        await asyncio.sleep(args.wait)
        client.disconnect()
        done.set()

    def on_message(msg: Any) -> None:
        print(f"message from {msg['from']}: {msg['body']}", file=out, flush=True)

    def on_presence(pres: Any) -> None:
        print(f"presence from {pres['from']}: {pres['type']} {pres['show']} {pres['status']}".rstrip(), file=out,
              flush=True)

    client.add_event_handler("session_start", on_start)
    client.add_event_handler("message", on_message)
    client.add_event_handler("presence", on_presence)
    host, _, port = args.server.rpartition(":")
    client.connect(host=host, port=int(port))
    client.loop.run_until_complete(asyncio.wait_for(done.wait(), args.wait + 30))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
