"""The single-stanza XMPP codec for ``cpimgw parse xmpp`` and ``cpimgw translate`` (INativeCodec).

``parse`` reads one ``<message/>``, ``<presence/>`` or ``<iq/>`` (namespace
``jabber:client`` unless it declares its own) through the hardened parser
(:mod:`.hardening`: no DOCTYPE, 64 KiB cap) and returns its JSON form;
``to_operation`` maps it with :mod:`.mapping` (a message to ``Message``, an
available/unavailable presence to ``Publish``, subscribe/unsubscribe/probe
to ``Subscribe``); ``from_operation`` maps a ``Message``, ``Notify``,
``Publish`` or ``Subscribe`` to stanza octets (several presences, one per
PIDF tuple, are separated by a newline).

Addresses follow :mod:`.addresses` with the embedded default gateway domain
(``gw.localhost``): a JID under it is a user of another network; any other
JID is an XMPP user.  ``from_operation`` has no address map to ask, so it
decides which side is the XMPP user from the addresses: a message that left
XMPP names both JIDs in ``XMPP.From`` / ``XMPP.To``, and the one *not* under
the gateway domain is the XMPP user (when it is one of the message's two
addresses); otherwise the destination is taken as the XMPP user.

Presence keeps the operation in XEP-0131 SHIM headers (:mod:`.rules`): a
``Notify`` becomes presences with ``Subscription-State`` (RFC 6665 §8.2.3
syntax), a ``Publish`` presences with ``Expires`` (and ``Instance`` when the
publication's instance is not its tuple's), and such a presence becomes the
same operation again.  A final notify without a document is an
``unsubscribed`` presence (rejected, noresource, invariant) or an
``unavailable`` one.  A ``Subscribe`` is ``subscribe`` (SHIM ``Expires``
unless it is ``subscription_duration``), ``unsubscribe`` (a cancel) or
``probe`` (a fetch, :func:`cpimgw.cpim.operations.is_fetch_id`), from the
watcher's instance.  A failure response is a message error (RFC 6120 §8.3)
and an error stanza the failure response.

The private ``<cpim/>``/``<pidf/>`` carriage is written only by
:meth:`XMPPCodec.with_private_carriage` (as the adapter writes towards another
cpimgw that advertises it, XEP-0030); the codec ``cpimgw translate`` uses
writes what an ordinary XMPP peer reads.  ``cpimgw translate --config``
gives it the deployment's gateway domain, XMPP domains and
``subscription_duration`` (``for_settings`` of the plugin).
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from cpimgw.adapters.xmpp import mapping
from cpimgw.adapters.xmpp.addresses import AddressMap
from cpimgw.adapters.xmpp.hardening import HardenedElementStream, StreamLimits, StreamRejected
from cpimgw.cpim.errors import ParseError
from cpimgw.adapters.xmpp.errors import (
    ERROR_TYPES,
    condition_for_stanza_error,
    sip_status_for_stanza_error,
    stanza_error_for_condition,
)
from cpimgw.cpim.interworking import tag_reason, tagged_status
from cpimgw.cpim.operations import (
    MEDIA_CPIM,
    Message,
    Notify,
    Operation,
    Publish,
    Response,
    Status,
    Subscribe,
    SubscriptionState,
    TerminationReason,
    new_fetch_id,
    new_id,
)
from cpimgw.cpim.pidf import timestamp_now

DEFAULT_GATEWAY = "gw.localhost"
#: A ``subscribe`` without a SHIM ``Expires`` asks for the adapter's default (``subscription_duration``).
DEFAULT_SUBSCRIPTION_DURATION = 86400


class XMPPParseError(ParseError):
    syntax = "xmpp"


def read_stanza(data: bytes, limits: StreamLimits = StreamLimits()) -> domish.Element:
    """One stanza from ``data`` through the hardened parser; :class:`XMPPParseError` otherwise."""
    if not isinstance(data, (bytes, bytearray)):
        raise XMPPParseError("a stanza is bytes")
    data = bytes(data).strip()
    if data.startswith(b"<?xml"):
        end = data.find(b"?>")
        data = data[end + 2 :].lstrip() if end != -1 else data
    stream = HardenedElementStream(limits)
    found: list[domish.Element] = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    try:
        stream.parse(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        stream.parse(data)
    except StreamRejected as error:
        raise XMPPParseError(f"<{error.condition}/>: {error.reason}") from None
    if stream.currElem is not None or len(found) != 1:
        raise XMPPParseError(f"expected exactly one complete stanza, found {len(found)}")
    stanza = found[0]
    if stanza.name not in ("message", "presence", "iq"):
        raise XMPPParseError(f"<{stanza.name}/> is not a stanza (message, presence or iq)")
    return stanza


def element_dict(element: domish.Element) -> dict[str, Any]:
    """A JSON-friendly view of an element: name, namespace, attributes, text, children."""
    attributes = {}
    for key, value in element.attributes.items():
        name = f"xml:{key[1]}" if isinstance(key, tuple) and key[0] == mapping.NS_XML else (
            f"{{{key[0]}}}{key[1]}" if isinstance(key, tuple) else key)
        attributes[name] = value
    result: dict[str, Any] = {"name": element.name, "namespace": element.uri, "attributes": attributes}
    text = "".join(str(c) for c in element.children if isinstance(c, str))
    if text.strip():
        result["text"] = text
    children = [element_dict(child) for child in element.elements()]
    if children:
        result["children"] = children
    return result


class XMPPCodec:
    """``xmpp``: one XMPP stanza."""

    name = "xmpp"

    def __init__(self, gateway_domain: str = DEFAULT_GATEWAY, *, private_carriage: bool = False,
                 subscription_duration: int = DEFAULT_SUBSCRIPTION_DURATION,
                 xmpp_domains: tuple[str, ...] = ()) -> None:
        self.gateway_domain = gateway_domain
        self.private_carriage = private_carriage
        self.subscription_duration = subscription_duration
        #: The XMPP users' domains of a configuration (``cpimgw translate --config``); empty: decided per
        #: operation from its addresses (see the module docstring).
        self.xmpp_domains = tuple(xmpp_domains)

    def _addresses(self, *guess: str) -> AddressMap:
        return AddressMap(self.gateway_domain, self.xmpp_domains or guess)

    def with_private_carriage(self) -> "XMPPCodec":
        """The same codec writing the private ``<cpim/>``/``<pidf/>`` carriage, as the adapter does towards
        a peer that advertises :data:`.rules.FEATURE_CARRIAGE` (another cpimgw)."""
        return XMPPCodec(self.gateway_domain, private_carriage=True, subscription_duration=self.subscription_duration,
                         xmpp_domains=self.xmpp_domains)

    def parse(self, data: bytes) -> dict[str, Any]:
        return element_dict(read_stanza(data))

    def to_operation(self, data: bytes) -> Operation | Response:
        stanza = read_stanza(data)
        addresses = AddressMap(self.gateway_domain, self.xmpp_domains)
        if stanza.getAttribute("type") == "error":
            return self._response(stanza)
        try:
            if stanza.name == "message":
                return mapping.message_to_cpim(
                    stanza, addresses, now=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0),
                    origin="xmpp")
            if stanza.name == "presence":
                kind = mapping.presence_type(stanza)
                carried = self._carried_operation(stanza, addresses)
                if carried is not None:
                    return carried
                notified = mapping.read_notify_headers(stanza)
                if notified is not None:
                    return self._notify(stanza, addresses, kind, notified)
                if kind in ("available", "unavailable"):
                    entity, resource, content = mapping.presence_to_pidf(
                        stanza, addresses, timestamp=timestamp_now(time.time()))
                    shim = mapping.rules.read_shim(stanza)
                    expires = mapping.rules.first_shim(shim, "Expires")
                    return Publish(entity, content, origin="xmpp",
                                   instance=mapping.rules.first_shim(shim, "Instance") or resource,
                                   expires=int(expires) if expires and expires.isdigit() else None)
                if kind in ("subscribe", "unsubscribe", "probe"):
                    watcher, instance = addresses.jid_to_uri(mapping._jid_attr(stanza, "from"), "pres")
                    target, _ = addresses.jid_to_uri(mapping._jid_attr(stanza, "to"), "pres")
                    if kind == "subscribe":
                        return Subscribe(watcher, target, mapping.subscription_duration(stanza, self.subscription_duration),
                                         origin="xmpp", watcher_instance=instance)
                    # RFC 3859 §4.3: a probe is a fetch (a new SubscriptID), unsubscribe cancels.
                    subscript_id = new_fetch_id() if kind == "probe" else new_id()
                    return Subscribe(watcher, target, 0, subscript_id=subscript_id, origin="xmpp",
                                     watcher_instance=instance)
                raise XMPPParseError(f"a presence of type {kind} has no CPIM operation")
        except mapping.StanzaError as error:
            raise XMPPParseError(f"<{error.condition}/>: {error.reason}") from None
        raise XMPPParseError("an <iq/> has no CPIM operation")

    @staticmethod
    def _response(stanza: domish.Element) -> Response:
        """A ``type='error'`` stanza: the CPIM failure ``response`` (RFC 7247 §7.1; the reason names the XMPP
        condition, so XMPP gets the same one back where the tables are many to one)."""
        condition, text = mapping.stanza_error_condition(stanza)
        bare = not (stanza.getAttribute("from") and mapping.parse_jid(stanza["from"]).resource)
        return Response(stanza.getAttribute("id") or new_id(), Status.FAILURE, tag_reason("XMPP", condition, text),
                        condition_for_stanza_error(condition), None, sip_status_for_stanza_error(condition, bare=bare))

    def _error(self, response: Response) -> domish.Element:
        """A CPIM failure ``response`` as an XMPP error (RFC 6120 §8.3): the condition its reason names,
        else the RFC 7247 §7.2 one of its SIP status or condition."""
        named, text = tagged_status(response.reason, "XMPP")
        if named is not None:
            condition, error_type = named, ERROR_TYPES.get(named, "cancel")
        else:
            condition, error_type = stanza_error_for_condition(response.condition, response.native_code)
            text = response.reason
        stanza = domish.Element((mapping.NS_CLIENT, "message"))
        stanza["from"] = self.gateway_domain
        stanza["id"] = response.trans_id
        stanza["type"] = "error"
        error = stanza.addElement("error")
        error["type"] = error_type
        error.addElement((mapping.NS_STANZAS, condition))
        if text:
            error.addElement((mapping.NS_STANZAS, "text"), content=text[:1000])
        return stanza

    def _notify(self, stanza: domish.Element, addresses: AddressMap, kind: str,
                notified: tuple[str, int | None, str | None]) -> Notify:
        """A presence with a SHIM ``Subscription-State``: the notify it was written for."""
        state_text, expires, reason_text = notified
        try:
            state = SubscriptionState(state_text)
            reason = TerminationReason(reason_text) if reason_text else None
        except ValueError:
            raise XMPPParseError(f"unknown subscription state or reason {state_text!r} {reason_text!r}") from None
        target, _ = addresses.jid_to_uri(mapping._jid_attr(stanza, "from").full(), "pres")
        watcher, _ = addresses.jid_to_uri(mapping._jid_attr(stanza, "to").full(), "pres")
        content = None
        sender = mapping._jid_attr(stanza, "from")
        # A final notify without a document (RFC 3859 §4.3) is an unsubscribed presence, or an unavailable
        # one from the bare JID holding nothing but its SHIM headers; any other presence holds a document.
        if kind in ("available", "unavailable") and (sender.resource or any(
                child.uri != mapping.rules.NS_SHIM for child in stanza.elements())):
            _, _, content = mapping.presence_to_pidf(stanza, addresses, timestamp=timestamp_now(time.time()))
        return Notify(watcher, target, content, subscript_id=new_id(), state=state, expires=expires,
                      reason=reason, origin="xmpp")

    def _carried_operation(self, stanza: domish.Element, addresses: AddressMap) -> Operation | None:
        """The Notify or Publish a presence carries in ``<pidf xmlns='urn:x-cpimgw:xmpp'/>`` (see the docstring)."""
        sender, _ = addresses.jid_to_uri(mapping._jid_attr(stanza, "from").full(), "pres")
        carried = mapping.carried_pidf(stanza, sender)
        if carried is None:
            return None
        content, attributes = carried
        resource = mapping._jid_attr(stanza, "from").resource
        expires = int(attributes["expires"]) if attributes.get("expires", "").isdigit() else None
        if attributes.get("op") == "notify":
            watcher, _ = addresses.jid_to_uri(mapping._jid_attr(stanza, "to").full(), "pres")
            try:
                state = SubscriptionState(attributes.get("state", "active"))
                reason = TerminationReason(attributes["reason"]) if attributes.get("reason") else None
            except ValueError:
                raise XMPPParseError("the carried notify has an unknown state or reason") from None
            return Notify(watcher, sender, content, subscript_id=new_id(), state=state,
                          expires=expires, reason=reason, origin="xmpp")
        if content is None:
            return None
        return Publish(sender, content, origin="xmpp", instance=attributes.get("instance", resource),
                       expires=expires)

    @staticmethod
    def _xmpp_domain(operation: Message, gateway_domain: str) -> str:
        """The domain of the message's XMPP user, decided from the addresses (see the module docstring)."""
        if operation.content.media_type == MEDIA_CPIM:
            try:
                headers = mapping.read_cpim(operation.content).extension_headers
            except ParseError:
                headers = []
            jids = [value for namespace, name, value, _ in headers
                    if namespace == mapping.NS_XMPP and name in ("From", "To")]
            ends = {operation.source.domain_key, operation.destination.domain_key}
            for text in jids:
                try:
                    host = JID(text).host
                except Exception:  # noqa: BLE001 - a bad JID decides nothing
                    continue
                if host != gateway_domain and host in ends:
                    return host
        return operation.destination.domain_key

    def from_operation(self, operation: Operation | Response) -> bytes:
        if isinstance(operation, Response):
            if operation.status is not Status.FAILURE:
                raise XMPPParseError(f"an XMPP message has no answer for {operation.status.value} (RFC 6121 §5.2.2: "
                                     "only an error comes back)")
            return self._error(operation).toXml().encode("utf-8")
        if isinstance(operation, Message):
            domain = self._xmpp_domain(operation, self.gateway_domain)
            addresses = self._addresses(domain)
            # As the adapter does by default (carry_cpim): a message from another network also
            # carries its Message/CPIM octets unmodified, so nothing XMPP cannot express is lost.
            return mapping.cpim_to_message(
                operation, addresses,
                carry_cpim=self.private_carriage and operation.origin != "xmpp").toXml().encode("utf-8")
        if isinstance(operation, Subscribe):
            # A subscription handed to XMPP asks an XMPP user: the target (unless a configuration says).
            addresses = self._addresses(operation.target.domain_key)
            return mapping.subscribe_presence(
                operation, addresses, default_duration=self.subscription_duration).toXml().encode("utf-8")
        if isinstance(operation, (Notify, Publish)):
            carry = None
            if isinstance(operation, Notify):
                addresses = self._addresses(operation.watcher.domain_key)
                target, recipient = operation.target, addresses.uri_to_jid(operation.watcher)
                reason = operation.reason.value if operation.reason is not None else None
                headers = mapping.notify_headers(operation.state.value, operation.expires, reason)
                if self.private_carriage:
                    carry = mapping.pidf_element(operation.presence, op="notify", state=operation.state.value,
                                                 expires=operation.expires, reason=reason)
            else:
                addresses = self._addresses(operation.presentity.domain_key)
                target = operation.presentity
                recipient = JID(self.gateway_domain)
                headers = [("Expires", str(operation.expires))] if operation.expires is not None else []
                document = mapping.read_pidf(operation.presence)
                if operation.instance and any(mapping.instance_for(t.id) != operation.instance
                                              for t in document.tuples):
                    headers.append(("Instance", operation.instance))  # the publication's own instance
                if self.private_carriage:
                    carry = mapping.pidf_element(operation.presence, op="publish", instance=operation.instance,
                                                 expires=operation.expires)
            if operation.presence is None:
                # A final notify without a document (RFC 3859 §4.3): as the adapter sends it.
                refused = operation.reason in (TerminationReason.REJECTED, TerminationReason.NORESOURCE,
                                               TerminationReason.INVARIANT)
                stanza = mapping.simple_presence(addresses.uri_to_jid(target), recipient,
                                                 "unsubscribed" if refused else "unavailable")
                stanza.addChild(mapping.rules.shim_element(headers))
                if carry is not None:
                    stanza.addChild(carry)
                return stanza.toXml().encode("utf-8")
            document = mapping.read_pidf(operation.presence)
            stanzas = mapping.pidf_to_presences(document, target, recipient, addresses, carry=carry,
                                                headers=headers)
            return b"\n".join(s.toXml().encode("utf-8") for s in stanzas)
        raise XMPPParseError(f"{type(operation).__name__} has no XMPP form")
