"""The corpora of ``cpimgw fidelity``: native units per protocol, as Python data so that every install ships them.

One module per protocol (``xmpp``, ``sip``, ``prim``), each with ``UNITS``:
a tuple of ``(name, octets)``.  SIP and PRIM units are written with the
helpers below so that CRLF line ends and the framing lengths (SIP
``Content-Length``, RFC 3261 §20.14; the PRIM start line's body length,
draft-ietf-prim-server-00 §4) are always right.  A corpus directory given to
``cpimgw fidelity --corpus DIR`` holds the same units as files,
``DIR/<protocol>/<name>.<ext>``.

The presence documents shared by the SIP and PRIM corpora (RFC 3863 PIDF with
RFC 4479/4480 elements) are here too.
"""

from __future__ import annotations

from typing import Sequence


def crlf(text: str) -> bytes:
    """``text`` with every line end written CRLF, as UTF-8."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def sip_request(start: str, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    """One SIP request: start line, headers, ``Content-Length`` of ``body``, body (RFC 3261 §7)."""
    lines = [start] + [f"{name}: {value}" for name, value in headers] + [f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def prim_request(method: str, headers: Sequence[tuple[str, str]], body: bytes = b"", *, request_id: str = "7",
                 version: str = "PRIM/1.0") -> bytes:
    """One PRIM request; the start line carries the body length (draft-ietf-prim-server-00 §4)."""
    lines = [f"{method} {version} {request_id} {len(body)}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def cpim(headers: Sequence[str], content_headers: Sequence[str], body: str) -> bytes:
    """A Message/CPIM object (RFC 3862 §3): message headers, a blank line, content headers, a blank line, body."""
    return crlf("\n".join(headers) + "\n\n" + "\n".join(content_headers) + "\n\n") + body.encode("utf-8")


PIDF_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
    ' xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:lt="urn:ietf:params:xml:ns:location-type"'
    ' entity="{entity}">\n'
)


def pidf(entity: str, inner: str) -> bytes:
    """A PIDF document of ``entity`` (RFC 3863 §4) with the RPID/data-model prefixes declared."""
    return (PIDF_HEAD.format(entity=entity) + inner + "</presence>\n").encode("utf-8")


def presence_documents(entity: str) -> list[tuple[str, bytes]]:
    """The presence documents of the SIP and PRIM corpora, for ``entity`` (a ``pres:`` URI)."""
    user = entity.split(":", 1)[1]
    return [
        ("open", pidf(entity, '<tuple id="ID-desk"><status><basic>open</basic></status></tuple>\n')),
        ("closed", pidf(entity, '<tuple id="ID-desk"><status><basic>closed</basic></status></tuple>\n')),
        ("contact-priority-timestamp", pidf(entity,
            f'<tuple id="ID-phone"><status><basic>open</basic></status>'
            f'<contact priority="0.8">im:{user}</contact><timestamp>2026-01-02T10:00:00Z</timestamp></tuple>\n')),
        ("notes-languages", pidf(entity,
            '<tuple id="ID-desk"><status><basic>open</basic></status>'
            '<note xml:lang="en">In a meeting</note><note xml:lang="fr">En r\u00e9union</note>'
            '<note xml:lang="ja">\u4f1a\u8b70\u4e2d</note></tuple>\n')),
        ("multi-tuple", pidf(entity,
            '<tuple id="ID-desk"><status><basic>open</basic></status><contact priority="1">im:' + user
            + '</contact></tuple>\n<tuple id="ID-mobile"><status><basic>closed</basic></status>'
            '<note>phone off</note></tuple>\n')),
        ("rpid-activities-mood", pidf(entity,
            '<tuple id="ID-desk"><status><basic>open</basic></status></tuple>\n'
            '<dm:person id="p1"><rpid:activities><rpid:meeting/><rpid:busy/></rpid:activities>'
            '<rpid:mood><rpid:happy/></rpid:mood><dm:note>Project review</dm:note></dm:person>\n')),
        ("rpid-place-sphere", pidf(entity,
            '<tuple id="ID-desk"><status><basic>open</basic></status></tuple>\n'
            '<dm:person id="p1"><rpid:activities><rpid:away/></rpid:activities>'
            '<rpid:place-type><lt:residence/></rpid:place-type><rpid:sphere>home</rpid:sphere>'
            '<rpid:time-offset>60</rpid:time-offset></dm:person>\n')),
        ("device-person", pidf(entity,
            '<tuple id="ID-laptop"><status><basic>open</basic></status>'
            '<dm:deviceID>urn:device:laptop-1</dm:deviceID></tuple>\n'
            '<dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>\n'
            '<dm:device id="d1"><rpid:user-input idle-threshold="600">idle</rpid:user-input>'
            '<dm:deviceID>urn:device:laptop-1</dm:deviceID><dm:note>Laptop</dm:note></dm:device>\n')),
        ("unknown-extension", pidf(entity,
            '<tuple id="ID-desk"><status><basic>open</basic>'
            '<geo xmlns="urn:example:geo" lat="48.1" lon="11.5"/></status>'
            '<feature xmlns="urn:example:caps" video="true">video</feature></tuple>\n'
            '<mood-ring xmlns="urn:example:fun">teal</mood-ring>\n')),
        ("opaque-tuple-id", pidf(entity,
            '<tuple id="a8dd3f"><status><basic>open</basic></status><note>away from desk</note></tuple>\n')),
        ("xmpp-show-document-note", pidf(entity,
            '<tuple id="ID-desk"><status><basic>open</basic><show xmlns="jabber:client">dnd</show></status>'
            '</tuple>\n<note xml:lang="en">Do not disturb</note>\n')),
    ]
