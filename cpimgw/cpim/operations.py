"""The abstract CPIM operations that travel on the bus (RFC 3860 §4, RFC 3859 §4).

Every native unit an adapter receives becomes one of these immutable values,
and every value the bus hands an adapter is one of these:

==============  ===============================================================
``Message``     RFC 3860 ``message``: source, destination, MaxForwards, TransID
                and the content (Message/CPIM octets, carried byte for byte).
``Subscribe``   RFC 3859 ``subscribe``: watcher, target, duration, SubscriptID,
                TransID.  Duration 0 with a known SubscriptID cancels, with a
                new one fetches (RFC 3859 §4.4.3).
``Notify``      RFC 3859 ``notify``: watcher, target, TransID, the presence
                document (PIDF octets), and the subscription state the native
                protocols need (SIP Subscription-State, XMPP unsubscribed).
``Publish``     a presentity's new state, for the presence service to fan out to
                every watcher.  Not an RFC 3859 operation: it is how a native
                presence broadcast (XMPP presence, SIP PUBLISH, PRIM PUBLISH)
                enters the hub.
``Response``    RFC 3859/3860 ``response``: TransID, status (success, failure,
                indeterminant), a reason, an optional duration.
==============  ===============================================================

A ``Response`` of status failure carries a :class:`Condition`, a small
protocol-neutral vocabulary that each adapter maps to its native error (SIP
status, XMPP stanza error, PRIM status) with the RFC 7247 §7 tables.

This module imports nothing of Twisted or of any adapter.
"""

from __future__ import annotations

import enum
import secrets
from typing import Union

import attrs

from cpimgw.cpim.uri import CPIMURI

#: RFC 3860 §4.1 asks originators for a value "over one hundred".
DEFAULT_MAX_FORWARDS = 120
#: RFC 3859/3860: gateways should cope with TransIDs and SubscriptIDs this long.
MAX_ID_LENGTH = 40

MEDIA_CPIM = "message/cpim"
MEDIA_PIDF = "application/pidf+xml"


def new_id() -> str:
    """An unpredictable identifier of 32 characters, unique over time (TransID, SubscriptID)."""
    return secrets.token_hex(16)


#: The prefix of a fetch's SubscriptID (:func:`new_fetch_id`).
FETCH_PREFIX = "fetch-"


def new_fetch_id() -> str:
    """A new SubscriptID for a one-time fetch (RFC 3859 §4.3: duration 0 with a new SubscriptID).

    Marked, so that a stateless translation (``cpimgw translate``) can tell a
    fetch (XMPP ``probe``, PRIM ``FETCH``) from a cancel (duration 0 with the
    SubscriptID of a running subscription) without the subscription table.
    """
    return FETCH_PREFIX + secrets.token_hex(16)


def is_fetch_id(subscript_id: str) -> bool:
    """Whether ``subscript_id`` was made by :func:`new_fetch_id`."""
    return subscript_id.startswith(FETCH_PREFIX)


class Status(enum.Enum):
    """The status of an RFC 3859/3860 ``response`` (the spelling is the RFC's)."""

    SUCCESS = "success"
    FAILURE = "failure"
    INDETERMINANT = "indeterminant"


class Condition(enum.Enum):
    """Why an operation failed, in words every adapter can map to its native error.

    The values follow the RFC 7247 §7 rows so that the mapping to SIP status
    codes and XMPP stanza error conditions is a table lookup.
    """

    BAD_REQUEST = "bad-request"  # SIP 400, XMPP bad-request, PRIM 400
    NOT_AUTHORIZED = "not-authorized"  # SIP 401/407, XMPP not-authorized
    FORBIDDEN = "forbidden"  # SIP 403, XMPP forbidden, PRIM 403
    NOT_FOUND = "item-not-found"  # SIP 404, XMPP item-not-found, PRIM 404
    NOT_ACCEPTABLE = "not-acceptable"  # SIP 406/488, XMPP not-acceptable
    TIMEOUT = "remote-server-timeout"  # SIP 408/504, XMPP remote-server-timeout
    GONE = "gone"  # SIP 410, XMPP gone
    TOO_LARGE = "policy-violation"  # SIP 413, XMPP policy-violation
    UNSUPPORTED_MEDIA = "unsupported-media"  # SIP 415, XMPP bad-request
    UNSUPPORTED = "feature-not-implemented"  # SIP 501/405, XMPP feature-not-implemented
    UNAVAILABLE = "recipient-unavailable"  # SIP 480, XMPP recipient-unavailable
    LOOP = "loop-detected"  # SIP 482/483, XMPP loop (RFC 7247: bad-request)
    BUSY = "resource-constraint"  # SIP 486/503, XMPP resource-constraint
    NO_ROUTE = "remote-server-not-found"  # SIP 404/502, XMPP remote-server-not-found
    NO_SUBSCRIPTION = "no-subscription"  # SIP 481, XMPP item-not-found
    INTERNAL = "internal-server-error"  # SIP 500, XMPP internal-server-error
    SERVICE_UNAVAILABLE = "service-unavailable"  # SIP 503, XMPP service-unavailable


class SubscriptionState(enum.Enum):
    """The state of a subscription as a ``Notify`` reports it (RFC 6665 §4.1.3)."""

    ACTIVE = "active"
    PENDING = "pending"
    TERMINATED = "terminated"


class TerminationReason(enum.Enum):
    """Why a subscription ended (RFC 6665 §4.2.2 reasons)."""

    DEACTIVATED = "deactivated"
    PROBATION = "probation"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    GIVEUP = "giveup"
    NORESOURCE = "noresource"
    INVARIANT = "invariant"


def _check_id(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string")
    if len(value) > 4 * MAX_ID_LENGTH:
        raise ValueError(f"{attribute.name} is longer than {4 * MAX_ID_LENGTH} characters")


def _check_max_forwards(instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if not isinstance(value, int) or value < 0:
        raise ValueError("max_forwards must be a non-negative integer")


@attrs.frozen
class Content:
    """A MIME entity carried by an operation: its media type and its octets.

    The octets are never decoded by the bus; ``media_type`` is the bare
    lower-case type/subtype, ``parameters`` the rest of the Content-Type.
    """

    media_type: str = attrs.field(converter=str.lower)
    body: bytes
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def content_type(self) -> str:
        """The full Content-Type header value."""
        return self.media_type + "".join(f";{name}={value}" for name, value in self.parameters)


@attrs.frozen
class Message:
    """RFC 3860 ``message``.

    :ivar source: the sender's inbox (``im:``).
    :ivar destination: the recipient's inbox (``im:``).
    :ivar content: normally ``message/cpim`` octets; other media types are
        allowed (RFC 3860 §3.1 MAY) and carried as they are.
    :ivar message_id: the identifier the source network gave the message
        (XMPP origin-id, PRIM Message-ID, SIP Call-ID...), for duplicate
        suppression across reconnects and restarts; ``None`` if it had none.
    :ivar origin: name of the adapter that put the operation on the bus.
    :ivar instance: the sending or receiving instance (XMPP resource, SIP
        GRUU, PRIM User-Agent-ID) when the source named one.
    :ivar conversation_id: the conversation the message belongs to when the
        source network named one (PRIM Conversation-ID, which replies reuse;
        an XMPP ``<thread/>`` is the same idea), so that a far adapter can
        carry it (SIP and PRIM: an extension header) and a reply on the way
        back keeps it; ``None`` if the source had none.
    """

    source: CPIMURI
    destination: CPIMURI
    content: Content
    trans_id: str = attrs.field(factory=new_id, validator=_check_id)
    max_forwards: int = attrs.field(default=DEFAULT_MAX_FORWARDS, validator=_check_max_forwards)
    message_id: str | None = None
    origin: str = ""
    source_instance: str | None = None
    destination_instance: str | None = None
    conversation_id: str | None = None


@attrs.frozen
class Subscribe:
    """RFC 3859 ``subscribe``.

    ``duration`` 0 with the SubscriptID of a running subscription cancels
    it; with a new SubscriptID it is a one-time fetch.
    """

    watcher: CPIMURI
    target: CPIMURI
    duration: int = attrs.field()
    subscript_id: str = attrs.field(factory=new_id, validator=_check_id)
    trans_id: str = attrs.field(factory=new_id, validator=_check_id)
    max_forwards: int = attrs.field(default=DEFAULT_MAX_FORWARDS, validator=_check_max_forwards)
    origin: str = ""
    watcher_instance: str | None = None

    @duration.validator
    def _check_duration(self, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
        if not isinstance(value, int) or value < 0 or value > 2**31 - 1:
            raise ValueError("duration must be an integer from 0 to 2147483647 seconds")


@attrs.frozen
class Notify:
    """RFC 3859 ``notify``: the presence of ``target`` for ``watcher``.

    :ivar presence: the presence document, normally ``application/pidf+xml``
        octets, relayed unmodified (RFC 3859 §3.1).  ``None`` only in a final
        notify that carries no state.
    :ivar state: where the subscription stands; ``TERMINATED`` marks the
        final notify.
    """

    watcher: CPIMURI
    target: CPIMURI
    presence: Content | None
    subscript_id: str = attrs.field(validator=_check_id)
    trans_id: str = attrs.field(factory=new_id, validator=_check_id)
    state: SubscriptionState = SubscriptionState.ACTIVE
    expires: int | None = None
    reason: TerminationReason | None = None
    max_forwards: int = attrs.field(default=DEFAULT_MAX_FORWARDS, validator=_check_max_forwards)
    origin: str = ""


@attrs.frozen
class Publish:
    """A presentity's new presence, to be fanned out to its watchers.

    :ivar instance: the device/resource whose state this is (XMPP resource,
        SIP ETag owner, PRIM User-Agent-ID), so that several sources compose.
    """

    presentity: CPIMURI
    presence: Content
    trans_id: str = attrs.field(factory=new_id, validator=_check_id)
    origin: str = ""
    instance: str | None = None
    expires: int | None = None


@attrs.frozen
class Response:
    """RFC 3859/3860 ``response``.

    :ivar condition: for ``FAILURE`` (and when useful for ``INDETERMINANT``),
        why; adapters map it to the native error.
    :ivar reason: human-readable text, passed on where the native protocol
        has room for it (SIP reason phrase, XMPP ``<text/>``).
    :ivar duration: for a subscribe, the lifetime granted.
    :ivar native_code: the status code of the far protocol when there was
        one (SIP 202, PRIM 101...), kept for logs and exact mappings.
    """

    trans_id: str
    status: Status
    reason: str = ""
    condition: Condition | None = None
    duration: int | None = None
    native_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILURE


Operation = Union[Message, Subscribe, Notify, Publish]


def success(operation: Operation, reason: str = "", duration: int | None = None, native_code: int | None = None) -> Response:
    return Response(operation.trans_id, Status.SUCCESS, reason, None, duration, native_code)


def indeterminant(operation: Operation, reason: str = "", native_code: int | None = None) -> Response:
    return Response(operation.trans_id, Status.INDETERMINANT, reason, None, None, native_code)


def failure(operation: Operation, condition: Condition, reason: str, native_code: int | None = None) -> Response:
    return Response(operation.trans_id, Status.FAILURE, reason, condition, None, native_code)
