"""Tests for cpimgw.adapters.sip.wire: RFC 4475 torture messages, RFC examples, properties."""

from __future__ import annotations

import string

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import TestCase

from cpimgw.cpim.errors import ParseError
from cpimgw.adapters.sip import wire
from cpimgw.adapters.sip.wire import (
    Request,
    Response,
    SipLimitError,
    SipParseError,
    StreamFramer,
    parse_message,
    parse_name_addr,
    parse_sip_uri,
)


def crlf(text: str, body: bytes = b"") -> bytes:
    """Test message text with LF line ends -> CRLF octets; ``body`` appended raw."""
    head = text.lstrip("\n")
    return head.replace("\n", "\r\n").encode("utf-8", "surrogateescape") + body


# ------------------------------------------------------------------ RFC 4475 §3.1.1 valid

WSINV = crlf(
    """INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

""",
    b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
    b"t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n",
)

INTMETH = crlf(
    """!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb
Content-Length: 0

"""
)

ESC01 = crlf(
    """INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 0

"""
)

ESCNULL = crlf(
    """REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

"""
)

ESC02 = crlf(
    """RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209nfsdlkajf
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"""
)

LWSDISP = crlf(
    """OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

"""
)

LONGREQ = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    'To: "I have a user name of ' + "extreme" * 10 + ' proportion"<sip:user@example.com:6000;unknownparam1=very'
    + "long" * 20 + "value;longparam" + "name" * 25 + "=shortvalue;very" + "long" * 25 + "ParameterNameWithNoValue>\n"
    "F: sip:" + "amazinglylongcallername" * 5 + "@example.net;tag=12" + "982" * 50 + "424;unknownheaderparam"
    + "name" * 20 + "=unknowheaderparamvalue" + "long" * 20 + ";unknownValuelessparamname\n"
    "Call-ID: longreq.one" + "reallylong" * 20 + "callid\n"
    "CSeq: 3882340 INVITE\n"
    "Unknown-" + "Long" * 20 + "-Name: unknown-" + "long" * 20 + "-value; unknown-" + "long" * 20 + "-parameter-name = unknown-" + "long" * 20 + "-parameter-value\n"
    + "".join(f"Via: SIP/2.0/TCP sip{n}.example.com;branch=z9hG4bK{n}longbranch\n" for n in range(1, 35))
    + "Max-Forwards: 70\n"
    + "Contact: <sip:amazinglylongcallername@host5.example.net>\n"
    + "Content-Type: application/sdp\n"
    + "l: 0\n\n"
)

DBLREQ = crlf(
    """REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 0

"""
)

SEMIURI = crlf(
    """OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

"""
)

TRANSPORTS = crlf(
    """OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

"""
)

MPART01_BODY = (
    b"--BoundaryBoundary\r\nContent-Type: text/plain\r\n\r\nbinary follows\r\n"
    b"--BoundaryBoundary\r\nContent-Type: application/octet-stream\r\n\r\n"
    b"\x00\x01\x02\r\n\r\n\x00\xff\x00--\r\n--BoundaryBoundary--\r\n"
)
MPART01 = crlf(
    f"""MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=BoundaryBoundary
Date: Thu, 18 Jan 2007 15:30:00 GMT
Content-Length: {len(MPART01_BODY)}

""",
    MPART01_BODY,
)

UNREASON = crlf(
    "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e"
    " \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435\n"
    """Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 0
Contact: <sip:user@host198.example.com>

"""
)

NOREASON = crlf(
    """SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"""
)

INV2543 = crlf(
    """INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

""",
    b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0\r\n",
)

BASE_HEADERS = """To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: {name}.0ha0isndaksdjasdf3234nas
CSeq: 8 {method}
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
"""


def _request(name: str, method: str = "OPTIONS", extra: str = "", uri: str = "sip:user@example.com") -> bytes:
    return crlf(f"{method} {uri} SIP/2.0\n" + BASE_HEADERS.format(name=name, method=method) + extra + "l: 0\n\n")


class ValidTortureTests(TestCase):
    """RFC 4475 §3.1.1: messages that must be accepted."""

    def test_wsinv(self) -> None:
        message = parse_message(WSINV)
        self.assertIsInstance(message, Request)
        self.assertEqual(message.method, "INVITE")
        self.assertEqual(message.uri, "sip:vivekg@chair-dnrc.example.com;unknownparam")
        self.assertEqual(message.max_forwards, 68)
        self.assertEqual(message.cseq, (9, "INVITE"))
        self.assertEqual(message.to.tag, "1918181833n")
        self.assertEqual(message.from_.tag, "98asjd8")
        self.assertEqual(message.from_.display, 'J Rosenberg \\"')
        self.assertEqual(message.get("subject"), "")
        self.assertEqual(message.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
        self.assertEqual(message.get("newfangledheader"), "newfangled value continued newfangled value")
        vias = message.vias
        self.assertEqual([v.sent_by for v in vias], ["192.0.2.2", "spindle.example.com", "192.168.255.111"])
        self.assertEqual([v.transport for v in vias], ["UDP", "TCP", "UDP"])
        self.assertEqual(vias[2].branch, "z9hG4bK30239")
        contact = parse_name_addr(message.get("contact"))
        self.assertEqual(contact.display, 'Quoted string ""')
        self.assertEqual(contact.param("q"), "0.33")
        self.assertEqual(contact.param("secondparam"), "")
        self.assertEqual(len(message.body), 150)
        self.assertEqual(message.media_type, "application/sdp")

    def test_intmeth(self) -> None:
        message = parse_message(INTMETH)
        self.assertEqual(message.method, "!interesting-Method0123456789_*+`.%indeed'~")
        self.assertEqual(message.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
        self.assertEqual(message.to.display, "BEL:\x07 NUL:\x00 DEL:\x7f")
        self.assertEqual(message.from_.display, "token1~` token2'+_ token3*%!.-")
        self.assertEqual(message.from_.tag, "_token~1'+`*%!-.")
        self.assertEqual(parse_sip_uri(message.uri).user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(message.get("extensionHeader-!.%*+_`'~"), "\ufeff\u5927\u505c\u96fb")

    def test_esc01_no_recursive_unescape(self) -> None:
        message = parse_message(ESC01)
        contact = parse_name_addr(message.get("contact")).sip_uri()
        self.assertEqual(contact.user, "cal%6Cer")
        self.assertEqual(contact.param("n%61me"), "v%61lue%25%34%31")
        self.assertEqual(message.media_type, "application/sdp")

    def test_escnull_two_distinct_bindings(self) -> None:
        message = parse_message(ESCNULL)
        users = [parse_name_addr(c).sip_uri().user for c in message.get_all("contact")]
        self.assertEqual(users, ["%00", "%00%00"])

    def test_esc02_percent_is_not_an_escape_in_names(self) -> None:
        message = parse_message(ESC02)
        self.assertEqual(message.method, "RE%47IST%45R")
        self.assertEqual(len(message.get_all("contact")), 2)
        self.assertEqual(message.get("C%6Fntact"), "<sip:alias2@host2.example.com>")
        self.assertEqual(message.to.display, "%Z%45")

    def test_lwsdisp(self) -> None:
        self.assertEqual(parse_message(LWSDISP).from_.display, "caller")

    def test_longreq(self) -> None:
        message = parse_message(LONGREQ)
        self.assertEqual(len(message.vias), 34)
        self.assertIn("extreme" * 10, message.to.display)

    def test_dblreq_ignores_the_second_request_in_a_datagram(self) -> None:
        message = parse_message(DBLREQ)
        self.assertEqual(message.method, "REGISTER")
        self.assertEqual(message.body, b"")

    def test_semiuri(self) -> None:
        message = parse_message(SEMIURI)
        uri = parse_sip_uri(message.uri)
        self.assertEqual((uri.user, uri.host, uri.params), ("user;par=u%40example.net", "example.com", ()))
        self.assertEqual(len(message.get_all("accept")), 6)

    def test_transports(self) -> None:
        message = parse_message(TRANSPORTS)
        self.assertEqual([v.transport for v in message.vias], ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])

    def test_mpart01_frames_binary_body_by_content_length(self) -> None:
        message = parse_message(MPART01)
        self.assertEqual(message.body, MPART01_BODY)
        self.assertEqual(message.content_type.param("boundary"), "BoundaryBoundary")
        framer = StreamFramer()
        self.assertEqual(list(framer.feed(MPART01)), [MPART01])

    def test_unreason(self) -> None:
        message = parse_message(UNREASON)
        self.assertIsInstance(message, Response)
        self.assertEqual(message.status, 200)
        self.assertTrue(message.reason.startswith("= 2**3 * 5**2 \u043d\u043e"))

    def test_noreason(self) -> None:
        message = parse_message(NOREASON)
        self.assertEqual((message.status, message.reason), (100, ""))

    def test_inv2543_backward_compatible(self) -> None:
        message = parse_message(INV2543)
        self.assertIsNone(message.top_via.branch)
        self.assertIsNone(message.from_.tag)
        self.assertIsNone(message.max_forwards)
        self.assertTrue(message.body.startswith(b"v=0"))

    def test_badbranch_parses(self) -> None:
        """§3.2: the branch is exactly the magic cookie; the parser accepts, matching falls back."""
        message = parse_message(
            _request("badbranch").replace(b"branch=z9hG4bKkdjuw", b"branch=z9hG4bK")
        )
        self.assertEqual(message.top_via.branch, "z9hG4bK")

    def test_ipv6_reference(self) -> None:
        """RFC 5118 §4.1 / §4.5: IPv6 references in the Request-URI and Via."""
        message = parse_message(
            _request("ipv6", uri="sip:[2001:db8::10]:5070").replace(
                b"192.0.2.15;", b"[2001:db8::9:1];received=[2001:db8::9:255];"
            )
        )
        self.assertEqual(parse_sip_uri(message.uri).host, "[2001:db8::10]")
        self.assertEqual(message.top_via.host, "[2001:db8::9:1]")
        self.assertEqual(message.top_via.param("received"), "[2001:db8::9:255]")


class InvalidTortureTests(TestCase):
    """RFC 4475 §3.1.2 and §3.3: messages that must be rejected, with the status."""

    def assertRejected(self, data: bytes, reason: str, status: int = 400, datagram: bool = True) -> None:
        error = self.assertRaises(SipParseError, parse_message, data, datagram=datagram)
        self.assertIn(reason, error.reason)
        self.assertEqual(error.status, status)

    def test_badinv01(self) -> None:
        data = _request("badinv01", extra='Contact: "Joe" <sip:joe@example.org>;;,;,,\n').replace(
            b"z9hG4bKkdjuw", b"z9hG4bKkdjuw;;,;,,"
        )
        self.assertRejected(data, "empty")

    def test_clerr(self) -> None:
        data = _request("clerr").replace(b"l: 0\r\n\r\n", b"l: 9999\r\n\r\nv=0\r\n")
        self.assertRejected(data, "larger than the 5 octets")
        self.assertEqual(list(StreamFramer().feed(data)), [])  # a stream waits for more

    def test_ncl(self) -> None:
        data = _request("ncl").replace(b"l: 0", b"l: -999")
        self.assertRejected(data, "not a non-negative number")
        framer = StreamFramer()
        self.assertRaises(SipParseError, list, framer.feed(data))

    def test_scalar02(self) -> None:
        self.assertRejected(_request("scalar02").replace(b"CSeq: 8", b"CSeq: 36893488147419103232"), "CSeq number")
        self.assertRejected(_request("scalar02").replace(b"Max-Forwards: 7", b"Max-Forwards: 300"), "above 255")
        self.assertRejected(_request("scalar02", extra="Expires: 10000000000000\n"), "Expires")

    def test_scalarlg(self) -> None:
        data = crlf(
            """SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

"""
        )
        self.assertRejected(data, "CSeq number")
        self.assertRejected(data.replace(b"9292394834772304023312", b"92"), "Retry-After")

    def test_quotbal(self) -> None:
        self.assertRejected(
            _request("quotbal").replace(b"To: sip:j.user@example.com", b'To: "Mr. J. User <sip:j.user@example.com>'),
            "unterminated quoted string",
        )

    def test_ltgtruri(self) -> None:
        self.assertRejected(_request("ltgtruri", uri="<sip:user@example.com>"), "Request-URI")

    def test_lwsruri(self) -> None:
        self.assertRejected(_request("lwsruri", uri="sip:user@example.com; lr"), "request line")

    def test_lwsstart(self) -> None:
        self.assertRejected(_request("lwsstart").replace(b"OPTIONS sip", b"OPTIONS  sip"), "request line")

    def test_trws(self) -> None:
        self.assertRejected(_request("trws").replace(b"SIP/2.0\r\nTo", b"SIP/2.0 \r\nTo"), "request line")

    def test_escruri(self) -> None:
        self.assertRejected(_request("escruri", uri="sip:user@example.com?Route=%3Csip:example.com%3E"), "?headers")

    def test_baddate(self) -> None:
        self.assertRejected(_request("baddate", extra="Date: Fri, 01 Jan 2010 16:00:00 EST\n"), "GMT")

    def test_regbadct(self) -> None:
        self.assertRejected(
            _request("regbadct", "REGISTER", "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n"),
            "enclosed in <>",
        )

    def test_badaspec(self) -> None:
        self.assertRejected(
            _request("badaspec").replace(b"To: sip:j.user@example.com", b'To: "Mr. J. User " <sip:j.user@example.com  >'),
            "bad URI inside <>",
        )

    def test_baddn(self) -> None:
        self.assertRejected(
            _request("baddn").replace(
                b"From: sip:caller@example.net;tag=134161461246", b"From: Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43"
            ),
            "must be a token or be quoted",
        )

    def test_badvers(self) -> None:
        self.assertRejected(_request("badvers").replace(b"SIP/2.0\r\nTo", b"SIP/7.0\r\nTo"), "not supported", 505)

    def test_mismatch01(self) -> None:
        self.assertRejected(_request("mismatch01").replace(b"CSeq: 8 OPTIONS", b"CSeq: 8 INVITE"), "does not match")

    def test_mismatch02(self) -> None:
        data = _request("mismatch02", method="NEWMETHOD").replace(b"CSeq: 8 NEWMETHOD", b"CSeq: 8 INVITE")
        self.assertRejected(data, "does not match", 501)

    def test_bigcode(self) -> None:
        data = NOREASON.replace(b"SIP/2.0 100 ", b"SIP/2.0 4294967301 better not break the receiver")
        self.assertRejected(data, "bad status code")

    def test_insuf(self) -> None:
        data = _request("insuf").replace(b"Call-ID: insuf.0ha0isndaksdjasdf3234nas\r\n", b"")
        self.assertRejected(data, "missing Call-ID")

    def test_multi01(self) -> None:
        self.assertRejected(_request("multi01", extra="To: sip:other@example.com\n"), "more than one To")

    def test_mcl01(self) -> None:
        data = _request("mcl01").replace(b"l: 0", b"Content-Length: 0\r\nl: 10")
        self.assertRejected(data, "more than one Content-Length")
        self.assertRaises(SipParseError, list, StreamFramer().feed(data))

    def test_rfc5118_unbracketed_ipv6(self) -> None:
        self.assertRejected(_request("ipv6", uri="sip:user@2001:db8::10"), "bad port")

    def test_cve_2018_16657_via(self) -> None:
        self.assertRejected(_request("via").replace(b"192.0.2.15;branch=z9hG4bKkdjuw", b":]"), "host is empty")

    def test_size_limit(self) -> None:
        error = self.assertRaises(SipLimitError, parse_message, LONGREQ, max_size=1000)
        self.assertEqual((error.limit, error.status), ("max_size", 513))


class ExampleTests(TestCase):
    """The examples of RFC 3428 §4, RFC 3856 §8 and RFC 3903 §15 as the digest lists them."""

    def test_rfc3428_message(self) -> None:
        data = crlf(
            """MESSAGE sip:user2@domain.com SIP/2.0
Via: SIP/2.0/TCP user1pc.domain.com;branch=z9hG4bK776sgdkse
Max-Forwards: 70
From: sip:user1@domain.com;tag=49583
To: sip:user2@domain.com
Call-ID: asd88asd77a@1.2.3.4
CSeq: 1 MESSAGE
Content-Type: text/plain
Content-Length: 18

""",
            b"Watson, come here.",
        )
        message = parse_message(data, datagram=False)
        self.assertEqual(message.body, b"Watson, come here.")
        self.assertEqual(message.media_type, "text/plain")
        response = wire.make_response(message, 200, "OK", to_tag="ab30317f1a784dc48ff824d0d3715d86")
        self.assertEqual(response.to.tag, "ab30317f1a784dc48ff824d0d3715d86")
        again = parse_message(response.to_bytes())
        self.assertEqual(again.headers[:-1], response.headers)
        self.assertEqual(again.headers[-1], ("Content-Length", "0"))

    def test_rfc3856_notify(self) -> None:
        data = crlf(
            """NOTIFY sip:user@watcherhost.example.com SIP/2.0
Via: SIP/2.0/TCP server.example.com;branch=z9hG4bKna998sk
From: <sip:resource@example.com>;tag=ffd2
To: <sip:user@example.com>;tag=xfg9
Call-ID: 2010@watcherhost.example.com
Event: presence
Subscription-State: active;expires=599
Max-Forwards: 70
CSeq: 8775 NOTIFY
Contact: sip:server.example.com
Content-Type: application/pidf+xml
Content-Length: 0

"""
        )
        message = parse_message(data)
        self.assertEqual(message.get("subscription-state"), "active;expires=599")
        self.assertEqual(message.get("o"), "presence")

    def test_rfc3903_publish_refresh(self) -> None:
        data = crlf(
            """PUBLISH sip:presentity@example.com SIP/2.0
Via: SIP/2.0/UDP pua.example.com;branch=z9hG4bK652hsge
To: <sip:presentity@example.com>
From: <sip:presentity@example.com>;tag=1234kljk
Call-ID: 98798kjh@pua.example.com
CSeq: 1 PUBLISH
Max-Forwards: 70
SIP-If-Match: dx200xyz
Expires: 3600
Event: presence
Content-Length: 0

"""
        )
        message = parse_message(data)
        self.assertEqual(message.get("sip-if-match"), "dx200xyz")
        self.assertEqual(message.expires, 3600)
        self.assertIn(b"SIP-If-Match: dx200xyz\r\n", message.to_bytes())

    def test_subscription_state_with_space(self) -> None:
        """RFC 3903 §15 writes ``active; expires=3599``."""
        message = parse_message(_request("ss", "NOTIFY", "Event: presence\nSubscription-State: active; expires=3599\n"))
        state, _, params = message.get("subscription-state").partition(";")
        self.assertEqual(dict(wire.parse_params(params)), {"expires": "3599"})


class FramerTests(TestCase):
    def test_split_across_chunks_and_keepalives(self) -> None:
        framer = StreamFramer()
        data = b"\r\n\r\n" + LWSDISP + LWSDISP
        out = []
        for index in range(0, len(data), 7):
            out.extend(framer.feed(data[index : index + 7]))
        self.assertEqual(out, [LWSDISP, LWSDISP])

    def test_oversized_header_block(self) -> None:
        framer = StreamFramer(max_size=100)
        self.assertRaises(SipLimitError, list, framer.feed(b"X" * 200))


# ------------------------------------------------------------------ properties

_token = st.text(alphabet=string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters='\\"<>,;'), min_size=1, max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["MESSAGE", "OPTIONS", "NOTIFY", "SUBSCRIBE", "PUBLISH"]))
    user = draw(st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8))
    host = draw(st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]"]))
    body = draw(st.binary(max_size=40))
    extra = draw(st.lists(st.tuples(_token.map(lambda t: "X-" + t), _value), max_size=4))
    headers = (
        ("Via", f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{draw(_token)}"),
        ("From", f"{wire.quote_string(draw(_value))} <sip:{user}@{host}>;tag={draw(_token)}"),
        ("To", f"<sip:{user}@example.com>"),
        ("Call-ID", draw(_token)),
        ("CSeq", f"{draw(st.integers(0, wire.MAX_UINT32))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        *extra,
        ("Content-Length", str(len(body))),
    )
    return Request(method, f"sip:{user}@{host}", headers, body)


#: RFC 3261 §25.1 (ABNF, case as written there):
#:   paramchar        = param-unreserved / unreserved / escaped
#:   param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
#:   unreserved       = alphanum / mark
#:   mark             = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
PARAM_UNRESERVED = "[]/:&+$"
MARK = "-_.!~*'()"
PARAMCHAR = string.ascii_letters + string.digits + PARAM_UNRESERVED + MARK
#: token (RFC 3261 §25.1) = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = string.ascii_letters + string.digits + "-.!%*_+`'~"


class URIParameterGrammarTests(TestCase):
    """URI parameters follow ``pname [ "=" pvalue ]``, ``1*paramchar`` (RFC 3261 §19.1.1, §25.1);
    header parameters keep ``token [ "=" ( token / host / quoted-string ) ]`` (§25.1 generic-param)."""

    GRUU = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"

    def test_raw_rfc5627_gruu(self) -> None:
        uri = parse_sip_uri(f"sip:alice@example.com;gr={self.GRUU}")
        self.assertEqual(uri.param("gr"), self.GRUU)
        self.assertEqual(str(uri), f"sip:alice@example.com;gr={self.GRUU}")

    def test_raw_gruu_inside_a_name_addr(self) -> None:
        addr = parse_name_addr(f"<sip:alice@example.com;gr={self.GRUU}>;tag=fe1")
        self.assertEqual(addr.sip_uri().param("gr"), self.GRUU)
        self.assertEqual(addr.tag, "fe1")

    def test_raw_gruu_in_a_request(self) -> None:
        data = crlf(f"""MESSAGE sip:bob@example.net;gr={self.GRUU} SIP/2.0
Via: SIP/2.0/UDP pc.example.com;branch=z9hG4bKgr1
Max-Forwards: 70
From: <sip:alice@example.com;gr={self.GRUU}>;tag=fe1
To: <sip:bob@example.net>
Call-ID: gr1@pc.example.com
CSeq: 1 MESSAGE
Content-Length: 0

""")
        request = parse_message(data)
        self.assertEqual(parse_sip_uri(request.uri).param("gr"), self.GRUU)
        self.assertEqual(request.from_.sip_uri().param("gr"), self.GRUU)

    def test_every_param_unreserved_and_mark_character(self) -> None:
        value = "a" + PARAM_UNRESERVED + MARK + "%41%2f"
        uri = parse_sip_uri(f"sip:host.example;{value}={value};flag")
        self.assertEqual(uri.params, ((value, value), ("flag", None)))

    def test_maddr_ipv6_and_the_rfc3261_examples(self) -> None:
        # RFC 3261 §19.1.3 examples.
        self.assertEqual(parse_sip_uri("sip:alice@atlanta.com;maddr=239.255.255.1;ttl=15").param("ttl"), "15")
        self.assertEqual(parse_sip_uri("sip:alice@registrar.com;method=REGISTER").param("method"), "REGISTER")
        self.assertEqual(parse_sip_uri("sip:h.example;maddr=[2001:db8::1];lr").param("maddr"), "[2001:db8::1]")
        self.assertEqual(parse_sip_uri("sip:h.example;lr").param("lr"), "")

    def test_what_paramchar_excludes(self) -> None:
        for bad in ('gr="quoted"', "gr=a`b", "gr=a,b", "gr=a?b", "gr=a@b", "gr==", "=v", "gr=", "gr=%4", "gr=%zz",
                    "gr=a<b", "gr=\u00e9".encode().decode("unicode_escape"), ""):
            with self.assertRaises(SipParseError, msg=bad):
                wire.parse_uri_params(bad)

    def test_empty_parameter_between_semicolons(self) -> None:
        with self.assertRaises(SipParseError):
            parse_sip_uri("sip:h.example;;lr")

    def test_header_parameters_keep_the_token_grammar(self) -> None:
        self.assertEqual(wire.parse_params('tag=a`b;q="x y";received=[::1]'),
                         (("tag", "a`b"), ("q", '"x y"'), ("received", "[::1]")))
        for bad in (f"tag={self.GRUU}", "tag=a/b", "tag=a[b"):
            with self.assertRaises(SipParseError, msg=bad):
                wire.parse_params(bad)
        with self.assertRaises(SipParseError):
            parse_name_addr(f"<sip:alice@example.com>;tag={self.GRUU}")

    @settings(max_examples=200, deadline=None)
    @given(st.text(PARAMCHAR, min_size=1, max_size=20), st.text(PARAMCHAR, min_size=1, max_size=30))
    def test_any_paramchar_name_and_value_parse(self, name: str, value: str) -> None:
        uri = parse_sip_uri(f"sip:u@h.example;{name}={value}")
        self.assertEqual(uri.params, ((name, value),))
        self.assertEqual(parse_sip_uri(str(uri)), uri)

    @settings(max_examples=200, deadline=None)
    @given(st.text(string.printable.replace(";", ""), min_size=1, max_size=20))
    def test_values_outside_paramchar_are_refused(self, value: str) -> None:  # ";" separates parameters
        stripped = value.replace("%", "")
        if set(stripped) <= set(PARAMCHAR) and "%" not in value:
            wire.parse_uri_params(f"p={value}")
            return
        if set(stripped) <= set(PARAMCHAR):
            return  # only escapes decide: covered by test_what_paramchar_excludes
        with self.assertRaises(SipParseError):
            wire.parse_uri_params(f"p={value}")


class PropertyTests(TestCase):
    @settings(max_examples=200, deadline=None)
    @given(requests())
    def test_round_trip(self, request: Request) -> None:
        self.assertEqual(parse_message(request.to_bytes()), request)
        self.assertEqual(parse_message(request.to_bytes(), datagram=False), request)

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from([WSINV, INTMETH, ESC01, MPART01, UNREASON, INV2543, LWSDISP, SEMIURI]),
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
        st.booleans(),
    )
    def test_mutations_raise_only_parse_errors(self, data: bytes, mutations: list, datagram: bool) -> None:
        mutable = bytearray(data)
        for position, octet in mutations:
            mutable[position % len(mutable)] = octet
        try:
            parse_message(bytes(mutable), datagram=datagram)
        except ParseError:
            pass
        framer = StreamFramer()
        try:
            list(framer.feed(bytes(mutable)))
        except ParseError:
            pass
