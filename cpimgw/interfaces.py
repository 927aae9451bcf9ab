"""Every zope interface of cpimgw, with the contract each implementation keeps.

The seams (design.md §3):

- :class:`IAdapter` — one protocol network attached to the bus; also an
  ``IService``.  Optional capabilities are separate interfaces
  (:class:`IMessaging`, :class:`IPresence`) checked with ``providedBy``: the bus
  answers an operation for a missing capability with a CPIM ``failure`` whose
  condition is ``feature-not-implemented`` and whose reason names the
  capability, instead of guessing.
- :class:`IAdapterFactory` — how an adapter is found and built: every factory
  is a ``twisted.plugin.IPlugin`` in ``twisted/plugins/``, found with
  ``getPlugins(IAdapterFactory)``, the built-in ones exactly like a third
  party's.
- :class:`INativeCodec` — the single-unit codec the ``cpimgw parse`` and
  ``cpimgw translate`` commands use; adapters' plugins provide one each.
- :class:`IBus`, :class:`IPresenceService`, :class:`IStore`, :class:`IPolicy`,
  :class:`IResolver` — the core's own seams, for tests, operators' rules and a
  distributed deployment.

Operations and responses are the values of :mod:`cpimgw.cpim.operations`.
Every method that does I/O returns a ``Deferred``; none raises into the
reactor: a failure is a ``Response`` with status failure, or a failed
Deferred whose failure the caller maps to one.
"""

from __future__ import annotations

from twisted.application.service import IService
from zope.interface import Attribute, Interface


class IAdapter(IService):
    """One protocol network attached to the bus.

    An adapter parses its native units, maps them to CPIM operations and
    hands them to ``bus.dispatch``; it maps what the bus hands it back to
    native units.  Adapters never import each other.
    """

    name = Attribute("Short unique name of this adapter instance (``str``), e.g. ``'xmpp'``.")
    domains = Attribute(
        "The domains (``tuple[str, ...]``, lower case) whose users this adapter reaches: "
        "the bus routes an operation whose destination is in one of them here."
    )

    def deliver(operation):
        """Take one operation from the bus towards the native network.

        :param operation: a ``Message``, ``Subscribe``, ``Notify`` or ``Publish``
            for a capability this adapter provides.
        :return: ``Deferred[Response]`` that fires with the outcome
            (``indeterminant`` when the native side gives no authoritative
            result).  It never errbacks for a native rejection: that is a
            ``failure`` Response with a ``Condition``.
        """


class IMessaging(Interface):
    """Capability: the adapter delivers RFC 3860 ``message`` operations."""


class IPresence(Interface):
    """Capability: the adapter delivers RFC 3859 ``subscribe`` and ``notify``.

    ``deliver(Subscribe)`` asks the native network for the target's presence
    on behalf of the watcher (and ``duration`` 0 cancels or fetches);
    ``deliver(Notify)`` tells a native watcher the target's presence.
    """


class IAdapterFactory(Interface):
    """Builds an adapter from its configuration section; a ``twisted.plugin.IPlugin``.

    Third-party protocols are added by dropping a module that provides this
    interface into a ``twisted/plugins/`` directory on ``sys.path``; nothing
    in ``cpimgw/`` changes.
    """

    name = Attribute("The adapter kind (``str``), also the key of its ``[adapters.NAME]`` config table.")
    description = Attribute("One line for ``cpimgw adapters`` and ``twistd cpimgw --help``.")
    srv_labels = Attribute(
        "RFC 3861 protocol labels (``tuple[str, ...]``, e.g. ``('_xmpp',)``) under which a "
        "domain served by this protocol publishes ``_im``/``_pres`` SRV records."
    )

    def defaults():
        """The settings this adapter runs with when its config table is empty (``dict``)."""

    def build(settings, bus):
        """Build the adapter.

        :param settings: the adapter's config table merged over ``defaults()``
            (``Mapping[str, object]``).
        :param bus: the ``IBus`` the adapter dispatches into; ``bus.reactor``,
            ``bus.store`` and ``bus.presence`` are there too.
        :return: an ``IAdapter`` provider, not yet started.
        :raise cpimgw.cpim.errors.ConfigError: naming the key and what is wrong.
        """


class INativeCodec(Interface):
    """Parse and translate one native unit, for ``cpimgw parse`` and ``cpimgw translate``.

    Provided (as an ``IPlugin``) by each adapter's plugin module; the core's
    own ``cpim`` and ``pidf`` codecs provide it too.
    """

    name = Attribute("The format name on the command line (``'cpim'``, ``'sip'``, ``'xmpp'``...).")

    def parse(data):
        """Parse ``data`` (``bytes``) into a JSON-serialisable ``dict`` (decoded values).

        :raise cpimgw.cpim.errors.ParseError: with the location and the reason.
        """

    def to_operation(data):
        """Map one native unit (``bytes``) to a CPIM operation, or raise ``ParseError``."""

    def from_operation(operation):
        """Map a CPIM operation to one native unit (``bytes``)."""


class ICommand(Interface):
    """A subcommand of the ``cpimgw`` command, shipped by a plugin (e.g. ``cpimgw prim``).

    Provided (as an ``IPlugin``) by an adapter's plugin module, so that a
    protocol brings its own tools without a change to ``cpimgw/cli.py``.
    """

    name = Attribute("The subcommand name (``str``), e.g. ``'prim'``.")

    def register(subparsers, **parser_kwargs):
        """Add the subcommand to an argparse ``subparsers``, passing ``parser_kwargs`` to
        every ``add_parser`` call, and ``set_defaults(run=...)`` where ``run(args) -> int``
        is the exit status."""


class IBus(Interface):
    """The central router: sees only CPIM operations."""

    reactor = Attribute("The reactor (clock and network) everything on this bus uses.")
    store = Attribute("The ``IStore``.")
    presence = Attribute("The ``IPresenceService``.")

    def register(adapter):
        """Attach an ``IAdapter``; its ``domains`` become routes.  Raises ``ValueError`` on a name clash."""

    def unregister(adapter):
        """Detach an adapter; operations for its domains then fail with ``no route``."""

    def adapter_for(domain):
        """``Deferred[IAdapter | None]``: the adapter that reaches ``domain`` (config table, adapters' own domains, then the ``IResolver``)."""

    def dispatch(operation):
        """Route one operation and return ``Deferred[Response]``.

        ``Message``: decrement MaxForwards (failure ``loop-detected`` at 0),
        suppress duplicates by (source, message_id) across restarts, ask the
        policy, deliver to the destination's adapter if it provides
        ``IMessaging``.  ``Subscribe``/``Notify``/``Publish`` go to the presence
        service.  The Deferred never errbacks: every problem becomes a
        ``failure`` Response with a ``Condition`` and a reason.
        """


class IPresenceService(Interface):
    """RFC 3859 presence semantics over every protocol at once."""

    def subscribe(operation):
        """``Deferred[Response]`` to a ``Subscribe``: validate, authorise, refuse a
        second live subscription of the same pair, record, forward to the
        target's adapter, answer with the granted duration, then notify the
        current state at once (the single notify of a fetch or a cancel)."""

    def notify(operation):
        """A ``Notify`` for one watcher from the target's network: remember the
        state, pass it to the watcher's adapter, end the subscription if the
        state is terminated.  ``Deferred[Response]``."""

    def publish(operation):
        """A ``Publish``: remember the state per instance, compose, and notify every
        watcher of the presentity whose view changed.  ``Deferred[Response]``."""

    def subscriptions_of(target):
        """``Deferred[list]`` of the live subscriptions whose target is ``target``."""


class IStore(Interface):
    """What must survive a restart: subscriptions, presence, duplicate keys, adapter state.

    Every method returns a ``Deferred``.  Implementations: in memory (tests),
    SQLite through ``twisted.enterprise.adbapi`` (the embedded default), and
    Redis (:mod:`cpimgw.store.redis`), shared by the nodes of a cluster.
    """

    def open():
        """``Deferred[None]``: make ready (create tables); called once before use."""

    def close():
        """``Deferred[None]``: release resources."""

    def put_subscription(record):
        """Insert or replace a subscription record (keyed by its ``subscript_id``)."""

    def set_digests(digests):
        """Record the last notified document of many subscriptions at once (a presence fan-out).

        :param digests: ``Mapping[str, str]``: SubscriptID -> ``last_document_digest``.
            A SubscriptID with no record is skipped (a subscription that ended
            meanwhile is not brought back); nothing else of a record changes.
        :return: ``Deferred[int]``: how many records were changed, in one write.
        """

    def get_subscription(subscript_id):
        """``Deferred[record | None]``."""

    def remove_subscription(subscript_id):
        """``Deferred[bool]``: whether a record was removed."""

    def subscriptions(target=None, watcher=None):
        """``Deferred[list[record]]``, filtered by target and/or watcher URI (principal match)."""

    def put_presence(presentity, instance, document, updated_at, expires_at=None):
        """Remember the last presence document (``Content``) of one instance of a presentity.

        :param expires_at: when that publication runs out (reactor seconds),
            ``None`` for never; the presence service withdraws it then.
        """

    def presence_expiries():
        """``Deferred[list[tuple[str, str, float]]]``: (presentity, instance, expires_at) of every
        stored instance that has an expiry, soonest first (re-armed at start)."""

    def get_presence(presentity):
        """``Deferred[dict[instance, Content]]`` of the presentity's known instances."""

    def remove_presence(presentity, instance):
        """Forget one instance's presence."""

    def remember(key, now, ttl):
        """Atomically record a duplicate-suppression key.

        :return: ``Deferred[bool]``: ``True`` if the key was new (and is now
            recorded until ``now + ttl``), ``False`` if it was already there.
        """

    def expire(now):
        """Drop duplicate keys and adapter values whose time has passed (``<= now``);
        ``Deferred[int]`` of how many entries were dropped."""

    # -- adapter state ---------------------------------------------------------
    #
    # A small generic key/value space in which adapters persist their own state
    # (PRIM leases, ACLs and class tables, XMPP subscription bookkeeping, SIP
    # dialogs...).  Each adapter picks its own ``scope`` (by convention its name
    # plus a dot and a kind: ``"prim.lease"``, ``"xmpp.roster"``); the store
    # never interprets scopes, keys or values.  Times are reactor seconds since
    # the epoch, like ``SubscriptionRecord.expires_at``; a value is *expired* at
    # ``now`` when its ``expires_at`` is not ``None`` and ``<= now``, where
    # ``now`` is the ``now`` argument when given, else the store's ``clock``
    # (the bus sets it to its reactor when the store was built without one).

    def put_value(scope, key, value, expires_at=None):
        """Insert or replace the value (``bytes``) of ``key`` (``str``) in ``scope`` (``str``).

        :param expires_at: when the value stops existing (reactor seconds), or
            ``None`` for never.
        :return: ``Deferred[None]``, fired once the value is stored (on SQLite:
            committed, so it survives a restart).
        :raise TypeError: ``scope``/``key`` not ``str`` or ``value`` not ``bytes``.
        """

    def get_value(scope, key, now=None):
        """``Deferred[bytes | None]``: the value, or ``None`` if absent or expired."""

    def get_values(scope, now=None):
        """``Deferred[dict[str, bytes]]``: every unexpired value of ``scope`` by key, keys sorted."""

    def remove_value(scope, key):
        """``Deferred[bool]``: whether a value (expired or not, not yet purged) was removed."""


class IPolicy(Interface):
    """Who may message whom and who may see whom; operators plug in their own rules."""

    def may_message(message):
        """``Deferred[str | None]``: ``None`` to allow, or the reason of a refusal."""

    def may_subscribe(subscribe):
        """``Deferred[str | None]``: ``None`` to allow, or the reason of a refusal."""

    def max_duration(subscribe):
        """The longest subscription (seconds) granted for this request (``int``)."""


class IResolver(Interface):
    """RFC 3861 domain resolution: which protocol reaches a domain."""

    def resolve(domain, labels):
        """``Deferred[str | None]``: the first of ``labels`` (e.g. ``['_xmpp', '_sip']``)
        under which ``domain`` has an ``_im`` or ``_pres`` SRV record, or ``None``."""
