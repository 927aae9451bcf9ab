"""SASL for PRIM LOGIN: PLAIN, CRAM-MD5 and EXTERNAL.

PRIM carries SASL in LOGIN commands (draft-mazzoldi-prim-impp-01 §13.1,
draft-ietf-prim-server-00 §9.2; digest §2.4 worked example and §2.14):

- ``Auth-State: init`` with ``SASL-Mech:`` a list (SP- or comma-separated,
  both seen in the drafts) in descending preference;
- the answer ``100 Authentication Continued`` names the chosen mechanism and
  carries a challenge in its body for CRAM-MD5
  (``<20010226095208.1018677043.foo1.bar.fujitsu.com>``);
- ``Auth-State: continue`` carries the credentials:

  * CRAM-MD5 (RFC 2195 keyed MD5): ``user CRLF hex(HMAC-MD5(secret, challenge))``;
  * PLAIN: ``user CRLF passphrase``; allowed only over TLS.  The RFC 4616
    form ``authzid NUL authcid NUL passwd`` is accepted too;
  * EXTERNAL: empty; the identity is the one TLS established.

- ``Auth-State: abort`` ends the exchange; ``init`` in the middle of one is
  a failure (406).

Pure code; no Twisted.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Callable, Iterable

import attrs

MECHANISMS = ("EXTERNAL", "CRAM-MD5", "PLAIN")
MAX_MECHANISM = 20


class SASLError(Exception):
    """An authentication exchange that fails; the server answers 406."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_mechanisms(value: str | None) -> list[str]:
    """Split a ``SASL-Mech`` value on spaces and commas (digest §2.5: accept both)."""
    if not value:
        return []
    names = [item.strip().upper() for item in value.replace(",", " ").split()]
    return [name for name in names if name and len(name) <= MAX_MECHANISM]


def format_mechanisms(names: Iterable[str]) -> str:
    """The server-00 form: comma-separated."""
    return ",".join(names)


def cram_md5_digest(secret: str | bytes, challenge: bytes) -> str:
    """RFC 2195: the hexadecimal HMAC-MD5 of ``challenge`` keyed by ``secret``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, challenge, "md5").hexdigest()


def cram_md5_response(user: str, secret: str | bytes, challenge: bytes) -> bytes:
    """The PRIM CRAM-MD5 LOGIN body: user name, CRLF, hex digest."""
    return user.encode("utf-8") + b"\r\n" + cram_md5_digest(secret, challenge).encode("ascii")


def plain_response(user: str, passphrase: str) -> bytes:
    """The PRIM PLAIN LOGIN body: user name, CRLF, pass phrase."""
    return user.encode("utf-8") + b"\r\n" + passphrase.encode("utf-8")


def make_challenge(host: str, now: float | None = None) -> bytes:
    """An RFC 2195-style challenge ``<timestamp.random@host>``, unique and unpredictable."""
    stamp = int(time.time() if now is None else now)
    return f"<{stamp}.{secrets.randbelow(10**10)}@{host}>".encode("ascii")


def _split_credentials(body: bytes, mechanism: str) -> tuple[str, str]:
    if mechanism == "PLAIN" and body.count(b"\x00") == 2:
        _authzid, authcid, password = body.split(b"\x00")
        user, secret = authcid, password
    else:
        user, sep, secret = body.partition(b"\r\n")
        if not sep:
            user, sep, secret = body.partition(b"\n")
        if not sep:
            raise SASLError(f"{mechanism} data is not 'user CRLF data'")
    try:
        return user.decode("utf-8"), secret.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError(f"{mechanism} data is not UTF-8") from None


@attrs.define
class ServerExchange:
    """The server side of one LOGIN exchange on one connection.

    :param secret_for: the shared secret of a user (or peer domain), ``None`` if unknown.
    :param external_identities: identities the TLS layer established (from the
        peer certificate), for EXTERNAL.
    :param tls: whether the connection is encrypted (PLAIN needs it).
    :param mechanisms: the mechanisms offered, in our preference order.
    """

    secret_for: Callable[[str], str | None]
    host: str
    tls: bool = False
    external_identities: tuple[str, ...] = ()
    mechanisms: tuple[str, ...] = MECHANISMS
    mechanism: str | None = None
    challenge: bytes = b""

    def available(self) -> list[str]:
        names = []
        for name in self.mechanisms:
            if name == "PLAIN" and not self.tls:
                continue
            if name == "EXTERNAL" and not self.external_identities:
                continue
            names.append(name)
        return names

    def start(self, offered: list[str]) -> tuple[str, bytes]:
        """Pick the client's most preferred mechanism we can run; return it and the challenge."""
        if self.mechanism is not None:
            raise SASLError("Auth-State: init in the middle of an exchange")
        ours = self.available()
        for name in offered:
            if name in ours:
                self.mechanism = name
                if name == "CRAM-MD5":
                    self.challenge = make_challenge(self.host)
                return name, self.challenge
        raise SASLError("no acceptable SASL mechanism among " + (", ".join(offered) or "none")
                        + (" (PLAIN needs TLS)" if "PLAIN" in offered and not self.tls else ""))

    def finish(self, mechanism: str, body: bytes, claimed: str) -> str:
        """Check the credentials of ``Auth-State: continue``; return the authenticated identity.

        :param claimed: the identity the LOGIN names (``Domain`` for servers,
            the ``From`` address for user agents); the authenticated user must be it.
        """
        if self.mechanism is None:
            raise SASLError("Auth-State: continue without Auth-State: init")
        if mechanism != self.mechanism:
            raise SASLError(f"mechanism changed from {self.mechanism} to {mechanism}")
        if mechanism == "EXTERNAL":
            if body:
                user = body.decode("utf-8", "replace")
                if user.lower() != claimed.lower():
                    raise SASLError("EXTERNAL authorisation identity differs from the claimed one")
            if claimed.lower() not in (name.lower() for name in self.external_identities):
                raise SASLError(f"the TLS certificate does not name {claimed}")
            return claimed
        user, answer = _split_credentials(body, mechanism)
        if user.lower() != claimed.lower():
            raise SASLError(f"authenticated as {user!r} but the LOGIN claims {claimed!r}")
        secret = self.secret_for(user)
        if secret is None:
            raise SASLError(f"unknown user {user!r}")
        if mechanism == "CRAM-MD5":
            expected = cram_md5_digest(secret, self.challenge)
            if not hmac.compare_digest(expected, answer.strip().lower()):
                raise SASLError("CRAM-MD5 digest does not match")
        elif mechanism == "PLAIN":
            if not self.tls:
                raise SASLError("PLAIN is refused on a connection without TLS")
            if not hmac.compare_digest(secret.encode("utf-8"), answer.encode("utf-8")):
                raise SASLError("wrong pass phrase")
        else:
            raise SASLError(f"mechanism {mechanism} is not supported")
        return user


def client_response(mechanism: str, user: str, secret: str | None, challenge: bytes) -> bytes:
    """The body of the client's ``Auth-State: continue`` LOGIN for ``mechanism``."""
    if mechanism == "EXTERNAL":
        return b""
    if secret is None:
        raise SASLError(f"{mechanism} needs a secret")
    if mechanism == "CRAM-MD5":
        return cram_md5_response(user, secret, challenge)
    if mechanism == "PLAIN":
        return plain_response(user, secret)
    raise SASLError(f"mechanism {mechanism} is not supported")
