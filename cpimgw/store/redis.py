"""An ``IStore`` on Redis, shared by every node of a cluster (``[store] kind = "redis"``).

What RFC 3859 §4.4.3 asks a presence service to keep in persistent storage
(running subscriptions and presence data), the duplicate keys of RFC 3860
§4 messages and the adapters' own state live in one Redis database, so that
several gateway processes -- on one machine or many -- see the same facts.
It follows the same contract as :class:`cpimgw.store.memory.MemoryStore` and
:class:`cpimgw.store.sqlite.SQLiteStore` (the three pass one shared suite).

Client: ``txredisapi`` (a Twisted-native RESP client: commands return
Deferreds on the reactor, connections are re-established by themselves with
a backoff, and Redis Streams commands are reachable through its generic
``execute_command``).  Replies are kept as bytes (``charset=None``) so that
presence documents and adapter values round-trip octet for octet.

Layout, every key under the configured prefix ``P`` (default ``cpimgw:``):

``P sub:<id>``            hash, one subscription record (floats as ``repr``)
``P subs``                zset of SubscriptIDs by ``created_at``
``P subs:t:<target>``     set of SubscriptIDs per target principal
``P subs:w:<watcher>``    set of SubscriptIDs per watcher principal
``P subexp``              zset of SubscriptIDs by ``expires_at`` (the sweeper's)
``P pres:<presentity>``   hash instance -> JSON (media type, parameters, body, times)
``P presentities``        set of presentities with at least one instance
``P presexp``             zset ``presentity NUL instance`` by ``expires_at``
``P dup:<key>``           string: the expiry of a duplicate key, written with
                          ``SET ... NX PX ttl`` so that a message reaching two
                          nodes is handed on once and Redis drops the key by itself
``P dupexp``              zset of duplicate keys by expiry (``expire(now)`` counts)
``P val:<scope>``         hash key -> adapter value (PRIM ACLs, class tables,
                          tuples, leases; XMPP and SIP bookkeeping)
``P valexp:<scope>``      hash key -> expiry of that value
``P valexp``              zset ``scope NUL key`` by expiry
``P scopes``              set of scopes holding values

Writes that touch several keys run as one Lua script (``EVALSHA``, atomic
on the server).  Times are the callers' reactor seconds, as in the other
stores; TTLs given to Redis are relative, so Redis's own clock is never
compared with the reactor's.

When Redis is unreachable every method fails at once with
:class:`StoreUnavailable` (the bus answers ``failure`` rather than accept a
message it could not record) and :meth:`RedisStore.connected` is ``False``
(``/health`` reports the store down); the client reconnects by itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import Content
from cpimgw.cpim.uri import CPIMURI
from cpimgw.interfaces import IStore
from cpimgw.store.memory import order_presence
from cpimgw.store.records import (
    PresenceRecord,
    SubscriptionRecord,
    check_value_arguments,
    principal_key,
    store_seconds,
)

log = Logger()

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "cpimgw:"


class StoreUnavailable(Exception):
    """The Redis server cannot be reached right now (the client keeps reconnecting)."""


def parse_redis_url(url: str) -> dict[str, Any]:
    """``redis://[user[:password]@]host[:port][/db]`` -> connection arguments.

    :raise ConfigError: another scheme, a bad port or database number.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"must be a redis:// or rediss:// URL, got {url!r}", key="store.url")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError(f"bad port in {url!r}", key="store.url") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"the database must be a number, got {path!r}", key="store.url")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "dbid": int(path) if path else None,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "tls": parts.scheme == "rediss",
    }


# -- Lua scripts (run atomically by the server) --------------------------------
#
# ARGV[1] is always the key prefix.  Keys are built inside the scripts, which
# is fine for one Redis server (not a Redis Cluster: the gateway's keys are not
# hash-tagged).

_PUT_SUBSCRIPTION = """
local p, id = ARGV[1], ARGV[2]
local key = p .. 'sub:' .. id
local old = redis.call('HMGET', key, 'target', 'watcher')
if old[1] then redis.call('SREM', p .. 'subs:t:' .. old[1], id) end
if old[2] then redis.call('SREM', p .. 'subs:w:' .. old[2], id) end
redis.call('DEL', key)
local fields = cjson.decode(ARGV[3])
for i = 1, #fields, 2 do redis.call('HSET', key, fields[i], fields[i + 1]) end
redis.call('SADD', p .. 'subs:t:' .. ARGV[4], id)
redis.call('SADD', p .. 'subs:w:' .. ARGV[5], id)
redis.call('ZADD', p .. 'subs', ARGV[6], id)
redis.call('ZADD', p .. 'subexp', ARGV[7], id)
return 1
"""

_REMOVE_SUBSCRIPTION = """
local p, id = ARGV[1], ARGV[2]
local key = p .. 'sub:' .. id
local old = redis.call('HMGET', key, 'target', 'watcher')
if not old[1] then return 0 end
redis.call('SREM', p .. 'subs:t:' .. old[1], id)
redis.call('SREM', p .. 'subs:w:' .. old[2], id)
redis.call('DEL', key)
redis.call('ZREM', p .. 'subs', id)
redis.call('ZREM', p .. 'subexp', id)
return 1
"""

_SET_DIGESTS = """
local p, changed = ARGV[1], 0
for i = 2, #ARGV, 2 do
  local key = p .. 'sub:' .. ARGV[i]
  if redis.call('EXISTS', key) == 1 and redis.call('HGET', key, 'last_document_digest') ~= ARGV[i + 1] then
    redis.call('HSET', key, 'last_document_digest', ARGV[i + 1])
    changed = changed + 1
  end
end
return changed
"""

# ARGV[2]: 't' (by target), 'w' (by watcher) or 'all'; ARGV[3]: the principal.
_SUBSCRIPTIONS = """
local p, ids = ARGV[1], nil
if ARGV[2] == 'all' then ids = redis.call('ZRANGE', p .. 'subs', 0, -1)
else ids = redis.call('SMEMBERS', p .. 'subs:' .. ARGV[2] .. ':' .. ARGV[3]) end
local out = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HGETALL', p .. 'sub:' .. id)
  if #fields > 0 then out[#out + 1] = fields end
end
return out
"""

_DUE_SUBSCRIPTIONS = """
return redis.call('ZRANGEBYSCORE', ARGV[1] .. 'subexp', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
"""

_PUT_PRESENCE = """
local p, presentity, instance = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', p .. 'pres:' .. presentity, instance, ARGV[4])
redis.call('SADD', p .. 'presentities', presentity)
local member = presentity .. '\\0' .. instance
if ARGV[5] == '' then redis.call('ZREM', p .. 'presexp', member)
else redis.call('ZADD', p .. 'presexp', ARGV[5], member) end
return 1
"""

_REMOVE_PRESENCE = """
local p, presentity, instance = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'pres:' .. presentity
local removed = redis.call('HDEL', key, instance)
redis.call('ZREM', p .. 'presexp', presentity .. '\\0' .. instance)
if redis.call('HLEN', key) == 0 then redis.call('SREM', p .. 'presentities', presentity) end
return removed
"""

# SET NX with a relative TTL first (the common case: a new key); a key whose
# recorded expiry has passed on the callers' clock is replaced.  The value is
# "<expiry>" or, while the message is in flight on a cluster node,
# "<expiry> <node>": a key whose node has died (its heartbeat key is gone)
# before the message was handed on is taken over, so that a retransmission
# reaching another node is delivered rather than suppressed.
_REMEMBER = """
local p, k, now, at, ttl, owner = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local key = p .. 'dup:' .. k
local value = at
if owner ~= '' then value = at .. ' ' .. owner end
if not redis.call('SET', key, value, 'NX', 'PX', ttl) then
  local current = redis.call('GET', key)
  local cut = string.find(current, ' ', 1, true)
  local expiry, holder = current, nil
  if cut then expiry, holder = string.sub(current, 1, cut - 1), string.sub(current, cut + 1) end
  expiry = tonumber(expiry)
  local orphan = holder and holder ~= owner and redis.call('EXISTS', p .. 'node:' .. holder) == 0
  if expiry and expiry > now and not orphan then return 0 end
  redis.call('SET', key, value, 'PX', ttl)
end
redis.call('ZADD', p .. 'dupexp', at, k)
return 1
"""

# The message of a duplicate key was handed on: drop the in-flight mark.
_SETTLE = """
local key = ARGV[1] .. 'dup:' .. ARGV[2]
local current = redis.call('GET', key)
if not current then return 0 end
local cut = string.find(current, ' ', 1, true)
if not cut then return 0 end
redis.call('SET', key, string.sub(current, 1, cut - 1), 'KEEPTTL')
return 1
"""

_FORGET = """
local p, k = ARGV[1], ARGV[2]
redis.call('ZREM', p .. 'dupexp', k)
return redis.call('DEL', p .. 'dup:' .. k)
"""

_EXPIRE = """
local p, now, dropped = ARGV[1], ARGV[2], 0
local keys = redis.call('ZRANGEBYSCORE', p .. 'dupexp', '-inf', now)
for _, k in ipairs(keys) do redis.call('DEL', p .. 'dup:' .. k) end
redis.call('ZREMRANGEBYSCORE', p .. 'dupexp', '-inf', now)
dropped = #keys
local values = redis.call('ZRANGEBYSCORE', p .. 'valexp', '-inf', now)
for _, member in ipairs(values) do
  local cut = string.find(member, '\\0', 1, true)
  local scope, key = string.sub(member, 1, cut - 1), string.sub(member, cut + 1)
  dropped = dropped + redis.call('HDEL', p .. 'val:' .. scope, key)
  redis.call('HDEL', p .. 'valexp:' .. scope, key)
  if redis.call('HLEN', p .. 'val:' .. scope) == 0 then redis.call('SREM', p .. 'scopes', scope) end
end
redis.call('ZREMRANGEBYSCORE', p .. 'valexp', '-inf', now)
return dropped
"""

_PUT_VALUE = """
local p, scope, key = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', p .. 'val:' .. scope, key, ARGV[4])
redis.call('SADD', p .. 'scopes', scope)
local member = scope .. '\\0' .. key
if ARGV[5] == '' then
  redis.call('HDEL', p .. 'valexp:' .. scope, key)
  redis.call('ZREM', p .. 'valexp', member)
else
  redis.call('HSET', p .. 'valexp:' .. scope, key, ARGV[5])
  redis.call('ZADD', p .. 'valexp', ARGV[5], member)
end
return 1
"""

_GET_VALUES = """
local p, scope = ARGV[1], ARGV[2]
if ARGV[3] == '' then
  return {redis.call('HGETALL', p .. 'val:' .. scope), redis.call('HGETALL', p .. 'valexp:' .. scope)}
end
return {{ARGV[3], redis.call('HGET', p .. 'val:' .. scope, ARGV[3])},
        {ARGV[3], redis.call('HGET', p .. 'valexp:' .. scope, ARGV[3])}}
"""

_REMOVE_VALUE = """
local p, scope, key = ARGV[1], ARGV[2], ARGV[3]
local removed = redis.call('HDEL', p .. 'val:' .. scope, key)
redis.call('HDEL', p .. 'valexp:' .. scope, key)
redis.call('ZREM', p .. 'valexp', scope .. '\\0' .. key)
if redis.call('HLEN', p .. 'val:' .. scope) == 0 then redis.call('SREM', p .. 'scopes', scope) end
return removed
"""

_COUNTS = """
local p = ARGV[1]
local presence, values = 0, 0
for _, presentity in ipairs(redis.call('SMEMBERS', p .. 'presentities')) do
  presence = presence + redis.call('HLEN', p .. 'pres:' .. presentity)
end
for _, scope in ipairs(redis.call('SMEMBERS', p .. 'scopes')) do
  values = values + redis.call('HLEN', p .. 'val:' .. scope)
end
return {redis.call('ZCARD', p .. 'subs'), presence, redis.call('ZCARD', p .. 'dupexp'), values}
"""


class Script:
    """One Lua script, run with ``EVALSHA`` (and ``EVAL`` when the server does not know it yet,
    e.g. after a restart of Redis)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __call__(self, connection: Any, *args: Any) -> Deferred[Any]:
        def retry(reason: Any) -> Any:
            if "NOSCRIPT" in str(reason.value):
                return connection.execute_command("EVAL", self.source, 0, *args)
            return reason

        return connection.execute_command("EVALSHA", self.sha, 0, *args).addErrback(retry)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _pairs(flat: Iterable[Any]) -> dict[str, Any]:
    items = list(flat)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _float_text(value: float) -> str:
    return repr(float(value))


_SUBSCRIPTION_FIELDS = ("subscript_id", "watcher", "target", "watcher_origin", "watcher_instance", "expires_at",
                        "state", "created_at", "last_document_digest", "target_origin")


def _subscription_fields(record: SubscriptionRecord) -> list[str]:
    fields = ["subscript_id", record.subscript_id, "watcher", record.watcher, "target", record.target,
              "watcher_origin", record.watcher_origin, "expires_at", _float_text(record.expires_at),
              "state", record.state, "created_at", _float_text(record.created_at),
              "target_origin", record.target_origin]
    if record.watcher_instance is not None:
        fields += ["watcher_instance", record.watcher_instance]
    if record.last_document_digest is not None:
        fields += ["last_document_digest", record.last_document_digest]
    return fields


def _subscription(flat: Iterable[Any]) -> SubscriptionRecord:
    fields = {name: _text(value) for name, value in _pairs(flat).items()}
    return SubscriptionRecord(
        subscript_id=fields["subscript_id"], watcher=fields["watcher"], target=fields["target"],
        watcher_origin=fields["watcher_origin"], watcher_instance=fields.get("watcher_instance"),
        expires_at=float(fields["expires_at"]), state=fields["state"], created_at=float(fields["created_at"]),
        last_document_digest=fields.get("last_document_digest"), target_origin=fields.get("target_origin", ""),
    )


def _presence_json(document: Content, updated_at: float, expires_at: float | None) -> str:
    return json.dumps({
        "m": document.media_type, "p": [list(pair) for pair in document.parameters],
        "b": base64.b64encode(bytes(document.body)).decode("ascii"), "u": float(updated_at),
        "e": None if expires_at is None else float(expires_at),
    }, separators=(",", ":"))


def _presence_record(presentity: str, instance: str, text: Any) -> PresenceRecord:
    data = json.loads(_text(text))
    return PresenceRecord(presentity, instance, data["m"], base64.b64decode(data["b"]), float(data["u"]),
                          tuple(tuple(pair) for pair in data["p"]),
                          None if data["e"] is None else float(data["e"]))


@implementer(IStore)
class RedisStore:
    """Subscriptions, presence, duplicate keys and adapter state in Redis.

    :param url: ``redis://[user[:password]@]host[:port][/db]`` (``rediss://`` for TLS).
    :param prefix: prepended to every key, so that several gateways (or
        tests) can share one Redis database without seeing each other.
    :param reactor: the reactor of the connections (the global one by default).
    :param clock: the ``IReactorTime`` whose ``seconds()`` tells whether an
        adapter value has expired when no ``now`` is given; ``None`` until the
        bus sets its reactor.
    :param reply_timeout: seconds after which an unanswered command fails
        (and its connection is dropped and re-established).
    :param connect_timeout: seconds :meth:`open` waits for the first connection.
    """

    def __init__(self, url: str = DEFAULT_URL, *, prefix: str = DEFAULT_PREFIX, reactor: Any = None,
                 clock: Any = None, reply_timeout: float = 10.0, connect_timeout: float = 10.0,
                 poolsize: int = 2) -> None:
        self.url = url
        self.options = parse_redis_url(url)
        if not isinstance(prefix, str):
            raise ConfigError("must be a string", key="store.prefix")
        self.prefix = prefix
        self._reactor = reactor
        self.clock = clock
        self.reply_timeout = float(reply_timeout)
        self.connect_timeout = float(connect_timeout)
        self.poolsize = int(poolsize)
        self.factory: Any = None
        self._opening: Deferred[None] | None = None
        #: The cluster node id that :meth:`remember` marks new keys with until :meth:`settle`
        #: (``""``: no mark; a cluster node's bus sets it).
        self.owner = ""
        self._next = 0

    # -- connections -------------------------------------------------------

    def _the_reactor(self) -> Any:
        if self._reactor is not None:
            return self._reactor
        from twisted.internet import reactor

        return reactor

    def new_factory(self, poolsize: int = 1, *, reply_timeout: float | None = None) -> Any:
        """A connected-and-reconnecting ``txredisapi.RedisFactory`` to this store's server
        (the cluster layer takes its own for blocking stream reads)."""
        import txredisapi
        from twisted.internet import endpoints

        options = self.options
        factory = txredisapi.RedisFactory(
            f"{options['host']}:{options['port']}", options["dbid"], poolsize, True, txredisapi.ConnectionHandler,
            None, options["password"], self.reply_timeout if reply_timeout is None else reply_timeout, False,
            options["username"])
        factory.reconnect = True
        factory.initialDelay = 0.2
        factory.maxDelay = 2.0
        reactor = self._the_reactor()
        if options["tls"]:
            from twisted.internet import ssl

            endpoint: Any = endpoints.SSL4ClientEndpoint(
                reactor, options["host"], options["port"], ssl.optionsForClientTLS(options["host"]),
                timeout=self.connect_timeout)
        else:
            endpoint = endpoints.TCP4ClientEndpoint(reactor, options["host"], options["port"],
                                                    timeout=self.connect_timeout)
        factory.startConnecting(endpoint)
        return factory

    def connected(self) -> bool:
        """Whether at least one connection to Redis is up (``/health`` reports the store down otherwise)."""
        return self.factory is not None and bool(self.factory.pool)

    def connection(self) -> Any:
        """A connected ``txredisapi`` protocol of the pool.

        :raise StoreUnavailable: when no connection is up (the client keeps reconnecting).
        """
        if self.factory is None:
            raise StoreUnavailable(f"Redis store {self._where()} is not open")
        pool = self.factory.pool
        if not pool:
            raise StoreUnavailable(f"Redis store {self._where()} is unreachable (reconnecting)")
        # A connected protocol of the pool, round robin: its execute_command writes at once (the
        # pool's handler would add a Deferred and a queue round per command).
        self._next = (self._next + 1) % len(pool)
        return pool[self._next]

    def _where(self) -> str:
        return f"{self.options['host']}:{self.options['port']}"

    def key(self, *parts: str) -> str:
        """The full name of a key of this store (the prefix, then ``parts``)."""
        return self.prefix + "".join(parts)

    def _run(self, script: Script, *args: Any) -> Deferred[Any]:
        try:
            return script(self.connection(), self.prefix, *args)
        except StoreUnavailable as error:
            return fail(error)
        except Exception as error:  # the connection went down between the pool and the write
            return fail(StoreUnavailable(f"Redis store {self._where()}: {error}"))

    def command(self, *args: Any) -> Deferred[Any]:
        """One Redis command on a pooled connection; fails with :class:`StoreUnavailable` when down."""
        try:
            return self.connection().execute_command(*args)
        except StoreUnavailable as error:
            return fail(error)
        except Exception as error:
            return fail(StoreUnavailable(f"Redis store {self._where()}: {error}"))

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> Deferred[None]:
        """Connect (waiting at most ``connect_timeout`` for the first connection); again does nothing."""
        if self.factory is not None:
            return self._opening if self._opening is not None else succeed(None)
        self.factory = self.new_factory(self.poolsize)
        ready: Deferred[None] = Deferred()
        reactor = self._the_reactor()

        def check() -> None:
            if ready.called:
                return
            if self.factory is not None and self.factory.pool:
                ready.callback(None)
            elif reactor.seconds() >= deadline:
                factory, self.factory = self.factory, None
                if factory is not None:
                    factory.disconnect()
                ready.errback(StoreUnavailable(
                    f"Redis store {self._where()}: no connection within {self.connect_timeout:g} s"))
            else:
                reactor.callLater(0.05, check)

        deadline = reactor.seconds() + self.connect_timeout

        def opened(result: Any) -> Any:
            self._opening = None
            if result is None:
                log.info("Redis store {where} open (prefix {prefix!r})", where=self._where(), prefix=self.prefix)
            return result

        self._opening = ready.addBoth(opened)
        check()
        return self._opening

    def close(self) -> Deferred[None]:
        """Close the connections; calling it again does nothing."""
        factory, self.factory = self.factory, None
        if factory is None:
            return succeed(None)
        return factory.disconnect().addBoth(lambda _: None)

    # -- subscriptions -----------------------------------------------------

    def put_subscription(self, record: SubscriptionRecord) -> Deferred[None]:
        if not isinstance(record, SubscriptionRecord):
            raise TypeError(f"expected a SubscriptionRecord, got {type(record).__name__}")
        return self._run(Script_PUT_SUBSCRIPTION, record.subscript_id, json.dumps(_subscription_fields(record)),
                         record.target, record.watcher, _float_text(record.created_at),
                         _float_text(record.expires_at)).addCallback(lambda _: None)

    def set_digests(self, digests: Mapping[str, str]) -> Deferred[int]:
        if not digests:
            return succeed(0)
        args: list[str] = []
        for subscript_id, digest in digests.items():
            args += [subscript_id, digest]
        return self._run(Script_SET_DIGESTS, *args).addCallback(int)

    def get_subscription(self, subscript_id: str) -> Deferred[SubscriptionRecord | None]:
        return self.command("HGETALL", self.key("sub:", subscript_id)).addCallback(
            lambda flat: _subscription(flat) if flat else None)

    def remove_subscription(self, subscript_id: str) -> Deferred[bool]:
        return self._run(Script_REMOVE_SUBSCRIPTION, subscript_id).addCallback(bool)

    def subscriptions(
        self, target: CPIMURI | str | None = None, watcher: CPIMURI | str | None = None
    ) -> Deferred[list[SubscriptionRecord]]:
        target_key = principal_key(target) if target is not None else None
        watcher_key = principal_key(watcher) if watcher is not None else None
        if target_key is not None:
            query = self._run(Script_SUBSCRIPTIONS, "t", target_key)
        elif watcher_key is not None:
            query = self._run(Script_SUBSCRIPTIONS, "w", watcher_key)
        else:
            query = self._run(Script_SUBSCRIPTIONS, "all", "")

        def decode(rows: list[Any]) -> list[SubscriptionRecord]:
            found = [_subscription(row) for row in rows or ()]
            found = [record for record in found
                     if (target_key is None or record.target == target_key)
                     and (watcher_key is None or record.watcher == watcher_key)]
            found.sort(key=lambda record: (record.created_at, record.subscript_id))
            return found

        return query.addCallback(decode)

    def due_subscriptions(self, now: float, limit: int = 1000) -> Deferred[list[str]]:
        """SubscriptIDs whose ``expires_at`` is ``<= now`` (the cluster's expiry sweeper)."""
        return self._run(Script_DUE_SUBSCRIPTIONS, _float_text(now), int(limit)).addCallback(
            lambda ids: [_text(each) for each in ids or ()])

    # -- presence ----------------------------------------------------------

    def due_presence(self, now: float, limit: int = 1000) -> Deferred[list[tuple[str, str]]]:
        """(presentity, instance) of the publications whose ``expires_at`` is ``<= now``, soonest
        first (the cluster's expiry sweeper)."""
        return self.command("ZRANGEBYSCORE", self.key("presexp"), "-inf", _float_text(now), "LIMIT", 0,
                            int(limit)).addCallback(
            lambda members: [tuple(_text(member).partition("\x00")[::2]) for member in members or ()])

    def put_presence(
        self, presentity: CPIMURI | str, instance: str | None, document: Content, updated_at: float,
        expires_at: float | None = None,
    ) -> Deferred[None]:
        return self._run(Script_PUT_PRESENCE, principal_key(presentity), instance or "",
                         _presence_json(document, updated_at, expires_at),
                         "" if expires_at is None else _float_text(expires_at)).addCallback(lambda _: None)

    def presence_expiries(self) -> Deferred[list[tuple[str, str, float]]]:
        def decode(flat: list[Any]) -> list[tuple[str, str, float]]:
            found = []
            for i in range(0, len(flat or ()), 2):
                presentity, _, instance = _text(flat[i]).partition("\x00")
                found.append((presentity, instance, float(_text(flat[i + 1]))))
            found.sort(key=lambda item: (item[2], item[0], item[1]))
            return found

        return self.command("ZRANGE", self.key("presexp"), 0, -1, "WITHSCORES").addCallback(decode)

    def get_presence(self, presentity: CPIMURI | str) -> Deferred[dict[str, Content]]:
        key = principal_key(presentity)
        return self.command("HGETALL", self.key("pres:", key)).addCallback(
            lambda flat: order_presence(_presence_record(key, instance, text)
                                        for instance, text in _pairs(flat or ()).items()))

    def remove_presence(self, presentity: CPIMURI | str, instance: str | None) -> Deferred[bool]:
        return self._run(Script_REMOVE_PRESENCE, principal_key(presentity), instance or "").addCallback(bool)

    # -- duplicate keys ----------------------------------------------------

    def remember(self, key: str, now: float, ttl: float) -> Deferred[bool]:
        ttl_ms = max(1, int(math.ceil(float(ttl) * 1000)))
        return self._run(Script_REMEMBER, key, _float_text(now), _float_text(float(now) + float(ttl)),
                         ttl_ms, self.owner).addCallback(bool)

    def settle(self, key: str) -> Deferred[bool]:
        """The message of ``key`` was handed on: it no longer counts as in flight on this node
        (see :attr:`owner`)."""
        return self._run(Script_SETTLE, key).addCallback(bool)

    def forget(self, key: str) -> Deferred[bool]:
        """Drop one duplicate key (the bus does so when the message was not delivered)."""
        return self._run(Script_FORGET, key).addCallback(bool)

    def expire(self, now: float) -> Deferred[int]:
        return self._run(Script_EXPIRE, _float_text(now)).addCallback(int)

    # -- adapter state -----------------------------------------------------

    def _now(self, now: float | None) -> float:
        if now is not None:
            return float(now)
        return store_seconds(self.clock if self.clock is not None else self._reactor)

    def put_value(self, scope: str, key: str, value: bytes, expires_at: float | None = None) -> Deferred[None]:
        check_value_arguments(scope, key, value, expires_at)
        return self._run(Script_PUT_VALUE, scope, key, bytes(value),
                         "" if expires_at is None else _float_text(expires_at)).addCallback(lambda _: None)

    def _read_values(self, scope: str, key: str, now: float | None) -> Deferred[dict[str, bytes]]:
        moment = self._now(now)

        def decode(reply: list[Any]) -> dict[str, bytes]:
            values, expiries = _pairs(reply[0] or ()), _pairs(reply[1] or ())
            found = {}
            for name in sorted(values):
                value = values[name]
                if value is None:
                    continue
                at = expiries.get(name)
                if at is not None and float(_text(at)) <= moment:
                    continue
                found[name] = bytes(value)
            return found

        return self._run(Script_GET_VALUES, scope, key).addCallback(decode)

    def get_value(self, scope: str, key: str, now: float | None = None) -> Deferred[bytes | None]:
        check_value_arguments(scope, key)
        if key == "":
            # The script reads "" as "every key"; an empty key is looked up directly.
            return self._read_values(scope, "", now).addCallback(lambda found: found.get(""))
        return self._read_values(scope, key, now).addCallback(lambda found: found.get(key))

    def get_values(self, scope: str, now: float | None = None) -> Deferred[dict[str, bytes]]:
        check_value_arguments(scope)
        return self._read_values(scope, "", now)

    def remove_value(self, scope: str, key: str) -> Deferred[bool]:
        check_value_arguments(scope, key)
        return self._run(Script_REMOVE_VALUE, scope, key).addCallback(bool)

    def counts(self) -> Deferred[dict[str, int]]:
        """How many subscriptions, presence instances, duplicate keys and adapter values are held."""
        return self._run(Script_COUNTS).addCallback(lambda reply: {
            "subscriptions": int(reply[0]), "presence": int(reply[1]),
            "duplicate_keys": int(reply[2]), "values": int(reply[3])})


Script_PUT_SUBSCRIPTION = Script(_PUT_SUBSCRIPTION)
Script_REMOVE_SUBSCRIPTION = Script(_REMOVE_SUBSCRIPTION)
Script_SET_DIGESTS = Script(_SET_DIGESTS)
Script_SUBSCRIPTIONS = Script(_SUBSCRIPTIONS)
Script_DUE_SUBSCRIPTIONS = Script(_DUE_SUBSCRIPTIONS)
Script_PUT_PRESENCE = Script(_PUT_PRESENCE)
Script_REMOVE_PRESENCE = Script(_REMOVE_PRESENCE)
Script_REMEMBER = Script(_REMEMBER)
Script_FORGET = Script(_FORGET)
Script_SETTLE = Script(_SETTLE)
Script_EXPIRE = Script(_EXPIRE)
Script_PUT_VALUE = Script(_PUT_VALUE)
Script_GET_VALUES = Script(_GET_VALUES)
Script_REMOVE_VALUE = Script(_REMOVE_VALUE)
Script_COUNTS = Script(_COUNTS)

__all__ = ["RedisStore", "StoreUnavailable", "Script", "parse_redis_url", "DEFAULT_URL", "DEFAULT_PREFIX"]
