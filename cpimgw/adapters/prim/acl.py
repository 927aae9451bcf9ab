"""PRIM access control lists and class tables (-01 §10.6, §14.1, §14.2).

Both are keyed by a watcher/requester address, ``@domain`` or ``.`` and are
matched most specific first (digest §2.8): the exact address, then the
requester's domain, then everybody; an ACL denies what no entry allows
(default deny), a class table puts an unmatched watcher in the implicit
default class (-02).

ACL (SETACL/GETACL)::

    <ACL><entry><target><address>...</address>+</target>
         <allow><fetch/><subscribe/>...</allow></entry>*</ACL>

Operation names are case-insensitive (the -01 example writes ``<FETCH/>``
where the DTD says ``fetch``).  Presentity operations: fetch, subscribe,
publish, remove; inbox operations: send, listen, silence.

Class table (SETCLASSTABLE/GETCLASSTABLE)::

    <CLASSTABLE><class name="..."><watcher>...</watcher>*</class>*</CLASSTABLE>

(the example uses lower-case ``<classtable>``).  Polite blocking: a tuple
published for some classes is only shown to watchers in those classes; the
others see no tuple at all, as if the presentity had published nothing.
"""

from __future__ import annotations

from typing import Iterable, Optional

import attrs
from lxml import etree

from cpimgw.cpim.errors import LimitExceededError, ParseError

PRESENTITY_OPERATIONS = frozenset({"fetch", "subscribe", "publish", "remove"})
INBOX_OPERATIONS = frozenset({"send", "listen", "silence"})
EVERYBODY = "."
DEFAULT_CLASS = ""
MAX_DOCUMENT = 65536
MAX_ENTRIES = 1024


class ACLError(ParseError):
    syntax = "prim-acl"


def _parse(data: bytes, root_name: str) -> etree._Element:
    if len(data) > MAX_DOCUMENT:
        raise LimitExceededError("max_size", MAX_DOCUMENT, syntax="prim-acl")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ACLError("a DOCTYPE or ENTITY declaration is not allowed")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise ACLError(f"not well-formed XML: {error.msg}", line=error.lineno) from None
    if _name(root) != root_name:
        raise ACLError(f"the root element is <{root.tag}>, not <{root_name.upper()}>")
    return root


def _name(element: etree._Element) -> str:
    return etree.QName(element.tag).localname.lower() if isinstance(element.tag, str) else ""


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if _name(child) == name]


def normalise_key(address: str) -> str:
    """An ACL/class key: an address without scheme (lower-case domain), ``@domain`` or ``.``."""
    key = address.strip()
    if key == EVERYBODY:
        return key
    if key.startswith("@"):
        return "@" + key[1:].lower().rstrip(".")
    if ":" in key.split("@", 1)[0]:
        key = key.split(":", 1)[1]
    user, at, domain = key.rpartition("@")
    return f"{user}@{domain.lower().rstrip('.')}" if at else key.lower()


def lookup_keys(requester: str) -> list[str]:
    """The keys tried for ``requester``, most specific first: address, ``@domain``, ``.``."""
    key = normalise_key(requester)
    keys = [key]
    if "@" in key and not key.startswith("@"):
        keys.append("@" + key.rpartition("@")[2])
    keys.append(EVERYBODY)
    return keys


@attrs.frozen
class AccessList:
    """An ACL: key -> permitted operations."""

    entries: dict = attrs.field(factory=dict)  # str -> frozenset[str]

    def permitted(self, requester: str) -> frozenset[str]:
        for key in lookup_keys(requester):
            if key in self.entries:
                return self.entries[key]
        return frozenset()

    def allows(self, requester: str, operation: str) -> bool:
        return operation.lower() in self.permitted(requester)

    def to_xml(self) -> bytes:
        root = etree.Element("ACL")
        groups: dict[frozenset, list[str]] = {}
        for key, ops in self.entries.items():
            groups.setdefault(ops, []).append(key)
        for ops, keys in groups.items():
            entry = etree.SubElement(root, "entry")
            target = etree.SubElement(entry, "target")
            for key in keys:
                etree.SubElement(target, "address").text = key
            allow = etree.SubElement(entry, "allow")
            for op in sorted(ops):
                etree.SubElement(allow, op)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def parse_acl(data: bytes, operations: Optional[Iterable[str]] = None) -> AccessList:
    """Parse a SETACL body.  ``operations``: the allowed vocabulary (default: both kinds)."""
    vocabulary = frozenset(op.lower() for op in operations) if operations is not None else PRESENTITY_OPERATIONS | INBOX_OPERATIONS
    root = _parse(data, "acl")
    entries: dict[str, frozenset[str]] = {}
    for entry in _children(root, "entry"):
        if len(entries) >= MAX_ENTRIES:
            raise LimitExceededError("max_entries", MAX_ENTRIES, syntax="prim-acl")
        targets = _children(entry, "target")
        allows = _children(entry, "allow")
        if len(targets) != 1 or len(allows) != 1:
            raise ACLError("an entry needs exactly one <target> and one <allow>")
        ops = set()
        for op in allows[0]:
            name = _name(op)
            if not name:
                continue
            if name not in vocabulary:
                raise ACLError(f"<{op.tag}> is not an ACL operation here")
            ops.add(name)
        addresses = _children(targets[0], "address")
        if not addresses:
            raise ACLError("a <target> needs at least one <address>")
        for address in addresses:
            key = normalise_key(address.text or "")
            if not key:
                raise ACLError("an empty <address>")
            entries[key] = frozenset(ops)
    return AccessList(entries)


@attrs.frozen
class ClassTable:
    """A presentity's class table: watcher key -> class name."""

    classes: dict = attrs.field(factory=dict)  # key -> class name
    names: tuple[str, ...] = ()
    raw: bytes = b""

    def class_of(self, watcher: str) -> str:
        """The class of ``watcher`` (most specific key first), or the default class ``''``."""
        for key in lookup_keys(watcher):
            if key in self.classes:
                return self.classes[key]
        return DEFAULT_CLASS

    def visible(self, watcher: str, published_for: Iterable[str]) -> bool:
        """Whether a tuple published for ``published_for`` classes reaches ``watcher`` (polite blocking)."""
        wanted = set(published_for)
        if not wanted:
            return True
        return self.class_of(watcher) in wanted

    def to_xml(self) -> bytes:
        if self.raw:
            return self.raw
        root = etree.Element("CLASSTABLE")
        for name in self.names:
            element = etree.SubElement(root, "class", name=name)
            for key, cls in self.classes.items():
                if cls == name:
                    etree.SubElement(element, "watcher").text = key
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def parse_class_table(data: bytes) -> ClassTable:
    """Parse a SETCLASSTABLE body (``<CLASSTABLE>`` or ``<classtable>``)."""
    root = _parse(data, "classtable")
    classes: dict[str, str] = {}
    names = []
    for element in _children(root, "class"):
        name = element.get("name")
        if not name:
            raise ACLError("a <class> needs a name")
        names.append(name)
        for watcher in _children(element, "watcher"):
            key = normalise_key(watcher.text or "")
            if not key:
                raise ACLError("an empty <watcher>")
            if len(classes) >= MAX_ENTRIES:
                raise LimitExceededError("max_entries", MAX_ENTRIES, syntax="prim-acl")
            classes.setdefault(key, name)
    return ClassTable(classes, tuple(names), data)


def parse_classes(value: Optional[str]) -> tuple[str, ...]:
    """A ``Class`` header: SP-separated class names (the ABNF allows two; we allow any number)."""
    return tuple(value.split()) if value else ()
