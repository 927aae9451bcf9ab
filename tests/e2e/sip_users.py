"""SIP users of the end-to-end tests, played by sipp scenarios (RFC 3261, RFC 3428, RFC 3903, RFC 6665).

Each function returns the text of one sipp scenario; values are written in
with ``str.format`` (sipp's own ``[keywords]`` stay).  The SIP user agents
talk to the gateway directly for users of other networks (``sip:juliet@
xmpp.localhost`` sent to the gateway's address) and to Kamailio for their
own domain (REGISTER, PUBLISH), as ``conf/three-networks.toml`` describes.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'

_OK = """  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""


_OK_IN_DIALOG = _OK.replace(";tag=[pid]SIPpTag01[call_number]", "")


def _expect(answers: str) -> str:
    """sipp steps receiving the final response: ``2xx`` = 200 or 202 (RFC 3428 §7), else that code."""
    if answers == "2xx":
        return ('  <recv response="200" optional="true" next="answered" />\n  <recv response="202" />\n'
                '  <label id="answered" />\n  <pause milliseconds="10" />\n')
    return f'  <recv response="{answers}" />\n'


def message_uac(sender: str, recipient: str, body: str, content_type: str = "text/plain; charset=utf-8", *,
                answers: str = "2xx", cseq: int = 1, call_id: str = "[call_id]", display: str | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> str:
    """Send one MESSAGE from ``sip:sender`` to ``sip:recipient`` (retransmitted every 500 ms until answered).

    sipp exits 0 when the final response is ``answers`` (``2xx``: 200 or 202).
    :param display: the sender's display name in From (RFC 3261 §20.20).
    :param headers: further headers (Date, Subject...), written as they are.
    """
    name = f'"{display}" ' if display else ""
    more = "".join(f"\n      {key}: {value}" for key, value in headers)
    return _HEAD + f"""<scenario name="MESSAGE from {sender}">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:{recipient} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {name}<sip:{sender}>;tag=[pid]SIPpTag[call_number]
      To: <sip:{recipient}>
      Call-ID: {call_id}
      CSeq: {cseq} MESSAGE
      Max-Forwards: 70{more}
      Content-Type: {content_type}
      Content-Length: [len]

{body}
    ]]>
  </send>
{_expect(answers)}</scenario>
"""


def message_uas() -> str:
    """Answer a MESSAGE with 200 OK.  Each MESSAGE (its own Call-ID) is a new sipp call: run
    sipp with ``-m N`` to answer N of them."""
    return _HEAD + '<scenario name="MESSAGE receiver">\n  <recv request="MESSAGE" />\n' + _OK + "</scenario>\n"


def register_uac(user: str, contact_port: int, expires: int = 600) -> str:
    """REGISTER ``sip:user`` with the contact ``sip:USER@127.0.0.1:contact_port`` (another sipp)."""
    name = user.split("@", 1)[0]
    domain = user.split("@", 1)[1]
    return _HEAD + f"""<scenario name="REGISTER {user}">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}>;tag=[pid]SIPpTag[call_number]
      To: <sip:{user}>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{name}@127.0.0.1:{contact_port}>
      Max-Forwards: 70
      Expires: {expires}
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
"""


def pidf(entity: str, basic: str, note: str, tuple_id: str = "t1") -> str:
    """A one-tuple PIDF document (RFC 3863) on one line."""
    return ('<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
            f'entity="{escape(entity)}"><tuple id="{tuple_id}"><status><basic>{basic}</basic></status>'
            f"<note>{escape(note)}</note></tuple></presence>")


def publish_uac(user: str, basic: str, note: str, expires: int = 600, tuple_id: str = "t1") -> str:
    """PUBLISH (RFC 3903, initial) the presence of ``sip:user``: ``basic`` with ``note``.

    Every initial PUBLISH makes a new publication (entity tag); Kamailio
    composes the tuples of all of a presentity's publications.
    """
    return _HEAD + f"""<scenario name="PUBLISH {user}">
  <send retrans="500">
    <![CDATA[
      PUBLISH sip:{user} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}>;tag=[pid]SIPpTag[call_number]
      To: <sip:{user}>
      Call-ID: [call_id]
      CSeq: 1 PUBLISH
      Max-Forwards: 70
      Event: presence
      Expires: {expires}
      Content-Type: application/pidf+xml
      Content-Length: [len]

      {pidf("sip:" + user, basic, note, tuple_id)}
    ]]>
  </send>
  <recv response="200" />
</scenario>
"""


#: How many NOTIFYs a :func:`subscribe_uac` scenario answers.
MAX_NOTIFIES = 20
_NOTIFIES = ('  <recv request="NOTIFY" />\n' + _OK_IN_DIALOG) * MAX_NOTIFIES


def subscribe_uac(watcher: str, target: str, expires: int = 600) -> str:
    """SUBSCRIBE ``sip:watcher`` to ``sip:target``'s presence and answer every NOTIFY with 200.

    The scenario never ends by itself: the test reads the traced NOTIFYs and
    stops sipp once it saw what it waits for (sipp's own ``-timeout`` bounds it).
    The NOTIFY/200 steps are unrolled (:data:`MAX_NOTIFIES`): a loop through a
    ``<nop next=...>`` makes sipp drop a NOTIFY arriving during the jump as
    unexpected.
    """
    name = watcher.split("@", 1)[0]
    return _HEAD + f"""<scenario name="SUBSCRIBE {watcher} to {target}">
  <send retrans="500">
    <![CDATA[
      SUBSCRIBE sip:{target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{watcher}>;tag=[pid]SIPpTag[call_number]
      To: <sip:{target}>
      Call-ID: [call_id]
      CSeq: 1 SUBSCRIBE
      Contact: <sip:{name}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Event: presence
      Accept: application/pidf+xml
      Expires: {expires}
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" optional="true" next="notify" />
  <recv response="202" next="notify" />
  <label id="notify" />
{_NOTIFIES}  <pause milliseconds="40000" />
</scenario>
"""


def main(argv: list[str] | None = None) -> int:
    """Print one scenario for sipp (used by the README walkthrough)::

        python -m tests.e2e.sip_users message bob@sip.localhost alice@xmpp.localhost "Hello" > send.xml
        python -m tests.e2e.sip_users receive > bob.xml      (then sipp -m N to answer N MESSAGEs)
        python -m tests.e2e.sip_users register bob@sip.localhost 5090 > register.xml
        python -m tests.e2e.sip_users publish bob@sip.localhost open "at my desk" > publish.xml
        python -m tests.e2e.sip_users watch dan@sip.localhost alice@xmpp.localhost > watch.xml
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.e2e.sip_users", description="print a sipp scenario")
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("message", help="send one MESSAGE")
    p.add_argument("sender")
    p.add_argument("recipient")
    p.add_argument("text")
    sub.add_parser("receive", help="answer a MESSAGE with 200 (sipp -m N: N of them)")
    p = sub.add_parser("register", help="REGISTER a user with a contact port")
    p.add_argument("user")
    p.add_argument("contact_port", type=int)
    p = sub.add_parser("publish", help="PUBLISH a presence state")
    p.add_argument("user")
    p.add_argument("basic", choices=["open", "closed"])
    p.add_argument("note")
    p = sub.add_parser("watch", help="SUBSCRIBE to a presentity and answer the NOTIFYs")
    p.add_argument("watcher")
    p.add_argument("target")
    args = parser.parse_args(argv)
    if args.kind == "message":
        text = message_uac(args.sender, args.recipient, args.text)
    elif args.kind == "receive":
        text = message_uas()
    elif args.kind == "register":
        text = register_uac(args.user, args.contact_port)
    elif args.kind == "publish":
        text = publish_uac(args.user, args.basic, args.note)
    else:
        text = subscribe_uac(args.watcher, args.target)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
