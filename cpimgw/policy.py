"""The gateway's access control: who may message whom and who may see whom.

RFC 3860 §4 step 3 and RFC 3859 §4.4 step 2 ("access control refuses ->
failure") leave the rules to the service; :class:`DefaultPolicy` is the
rule set an operator configures in ``[policy]``:

- ``presence``: ``"allow"`` (the gateway lets every subscription through;
  the target's own network still authorises natively, e.g. XMPP
  subscription approval), ``"same-domain"`` (the watcher's domain must be
  the target's, or be listed in ``allow_domains``) or ``"deny"`` (only
  watchers of ``allow_domains``).
- ``message``: ``"allow"`` or ``"deny"`` (only sources of ``allow_domains``).
- ``deny_domains``: sources/watchers of these domains are always refused; it
  wins over every other rule.
- ``max_duration``: the longest subscription granted (seconds).

A domain entry that starts with ``"."`` also matches every subdomain
(``".example.com"`` matches ``chat.example.com``), like the static routing
table.  Every refusal reason names the rule that refused.

``may_message_now`` / ``may_subscribe_now`` give the same answers without a
Deferred; ``may_message`` and ``may_subscribe`` are marked with them for the
bus's synchronous fast path (:mod:`cpimgw.bus`, "Synchronous fast path").
"""

from __future__ import annotations

from typing import Iterable

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from cpimgw.cpim.errors import ConfigError
from cpimgw.cpim.operations import Message, Subscribe
from cpimgw.interfaces import IPolicy

PRESENCE_MODES = ("allow", "same-domain", "deny")
MESSAGE_MODES = ("allow", "deny")


def _normalise_domains(domains: Iterable[str], key: str) -> tuple[str, ...]:
    if isinstance(domains, str):
        raise ConfigError("must be a list of domains, not one string", key=key)
    result = []
    for domain in domains:
        if not isinstance(domain, str) or not domain.strip("."):
            raise ConfigError(f"{domain!r} is not a domain", key=key)
        result.append(domain.lower().rstrip("."))
    return tuple(result)


def domain_matches(domain: str, entries: Iterable[str]) -> str | None:
    """The first entry of ``entries`` that matches ``domain``, or ``None``.

    ``domain`` is compared without regard to case or a trailing dot; an entry
    ``".example.com"`` matches any subdomain of example.com (not example.com
    itself), any other entry only the domain itself.
    """
    domain = domain.lower().rstrip(".")
    for entry in entries:
        if entry.startswith("."):
            if domain.endswith(entry):
                return entry
        elif domain == entry:
            return entry
    return None


@implementer(IPolicy)
class DefaultPolicy:
    """The configurable default rules (see the module docstring)."""

    def __init__(
        self,
        *,
        presence: str = "allow",
        message: str = "allow",
        allow_domains: Iterable[str] = (),
        deny_domains: Iterable[str] = (),
        max_duration: int = 86400,
    ) -> None:
        if presence not in PRESENCE_MODES:
            raise ConfigError(
                f"presence must be one of {', '.join(PRESENCE_MODES)}, not {presence!r}", key="policy.presence"
            )
        if message not in MESSAGE_MODES:
            raise ConfigError(
                f"message must be one of {', '.join(MESSAGE_MODES)}, not {message!r}", key="policy.message"
            )
        if not isinstance(max_duration, int) or isinstance(max_duration, bool) or max_duration < 0:
            raise ConfigError(f"max_duration must be a non-negative integer, not {max_duration!r}",
                              key="policy.max_duration")
        self.presence = presence
        self.message = message
        self.allow_domains = _normalise_domains(allow_domains, "policy.allow_domains")
        self.deny_domains = _normalise_domains(deny_domains, "policy.deny_domains")
        self._max_duration = max_duration

    def message_refusal(self, message: Message) -> str | None:
        """The synchronous core of :meth:`may_message`."""
        source = message.source.domain_key
        denied = domain_matches(source, self.deny_domains)
        if denied is not None:
            return f"policy deny_domains: messages from {source} are refused (rule {denied!r})"
        if self.message == "deny" and domain_matches(source, self.allow_domains) is None:
            return f"policy message=deny: {source} is not in allow_domains"
        return None

    def subscribe_refusal(self, subscribe: Subscribe) -> str | None:
        """The synchronous core of :meth:`may_subscribe`."""
        watcher = subscribe.watcher.domain_key
        target = subscribe.target.domain_key
        denied = domain_matches(watcher, self.deny_domains)
        if denied is not None:
            return f"policy deny_domains: watchers from {watcher} are refused (rule {denied!r})"
        if self.presence == "deny" and domain_matches(watcher, self.allow_domains) is None:
            return f"policy presence=deny: {watcher} is not in allow_domains"
        if (
            self.presence == "same-domain"
            and watcher != target
            and domain_matches(watcher, self.allow_domains) is None
        ):
            return (
                f"policy presence=same-domain: watcher domain {watcher} is not {target} "
                "and not in allow_domains"
            )
        return None

    def may_message(self, message: Message) -> Deferred[str | None]:
        return succeed(self.may_message_now(message))

    def may_subscribe(self, subscribe: Subscribe) -> Deferred[str | None]:
        return succeed(self.may_subscribe_now(subscribe))

    def may_message_now(self, message: Message) -> str | None:
        """:meth:`may_message`'s answer itself (the bus's synchronous fast path calls it)."""
        return self.message_refusal(message)

    def may_subscribe_now(self, subscribe: Subscribe) -> str | None:
        """:meth:`may_subscribe`'s answer itself."""
        return self.subscribe_refusal(subscribe)

    # The bus's fast path (cpimgw.bus.SYNCHRONOUS_ATTRIBUTE): these methods are
    # succeed(<variant>(...)).  A subclass overriding may_message without the
    # mark is called through may_message, as any third-party IPolicy is.
    may_message.synchronous_variant = "may_message_now"  # type: ignore[attr-defined]
    may_subscribe.synchronous_variant = "may_subscribe_now"  # type: ignore[attr-defined]

    def max_duration(self, subscribe: Subscribe) -> int:
        return self._max_duration
