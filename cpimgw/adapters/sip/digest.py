"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616 §3.4, RFC 8760).

- :func:`parse_challenge` / :func:`parse_credentials` — the ``Digest``
  auth-param lists of WWW-Authenticate/Proxy-Authenticate and
  Authorization/Proxy-Authorization (quoted strings with escapes, any order).
- :func:`compute_response` — ``response`` for MD5, SHA-256 and SHA-512-256
  (RFC 8760 §2.3, with or without ``-sess``), ``qop=auth`` or no qop
  (RFC 2069 compatibility, RFC 3261 §22.4).
- :class:`Responder` — answers a 401/407 with credentials for its realm.
- :class:`Challenger` — makes stateless nonces (time + HMAC) and verifies
  credentials against a user table; a stale nonce is re-challenged with
  ``stale=true``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Callable, Mapping

import attrs

from cpimgw.adapters.sip.wire import SipParseError, quote_string, unquote_string

ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),  # noqa: S324 (RFC 3261 requires MD5)
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9\-_]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|\Z)', re.DOTALL)


def _hash(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm.upper().removesuffix("-SESS")
    if base not in ALGORITHMS:
        raise SipParseError(f"unsupported digest algorithm {algorithm!r}")
    return ALGORITHMS[base]


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """``Digest k=v, k="v"`` -> (scheme, {lower-case key: unquoted value})."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM_RE.match(rest, position)
        if not match or match.end() == position:
            raise SipParseError(f"bad auth-param list near {rest[position:position + 30]!r}")
        key, raw = match.group(1).lower(), match.group(2)
        params[key] = unquote_string(raw) if raw.startswith('"') else raw
        position = match.end()
    return scheme, params


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The digest ``response`` value (RFC 7616 §3.4.1, RFC 3261 §22.4)."""
    digest = _hash(algorithm)
    ha1 = digest(f"{username}:{realm}:{password}".encode())
    if algorithm.upper().endswith("-SESS"):
        ha1 = digest(f"{ha1}:{nonce}:{cnonce}".encode())
    if qop == "auth-int":
        ha2 = digest(f"{method}:{uri}:".encode() + digest(body).encode())
    else:
        ha2 = digest(f"{method}:{uri}".encode())
    if qop:
        return digest(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return digest(f"{ha1}:{nonce}:{ha2}".encode())


@attrs.frozen
class Credentials:
    username: str
    password: str


class Responder:
    """Answers challenges: ``authorization(challenge_value, method, uri)`` -> header value."""

    def __init__(self, credentials: Mapping[str, Credentials]) -> None:
        #: realm -> credentials; the realm ``"*"`` answers any realm.
        self.credentials = dict(credentials)
        self._nc: dict[str, int] = {}

    def can_answer(self, realm: str) -> bool:
        return realm in self.credentials or "*" in self.credentials

    def authorization(self, challenge: str, method: str, uri: str, body: bytes = b"") -> str | None:
        scheme, params = parse_auth_params(challenge)
        if scheme.lower() != "digest":
            return None
        realm = params.get("realm", "")
        creds = self.credentials.get(realm) or self.credentials.get("*")
        if creds is None or "nonce" not in params:
            return None
        algorithm = params.get("algorithm", "MD5")
        try:
            _hash(algorithm)
        except SipParseError:
            return None
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        qop = "auth" if "auth" in qops else ("auth-int" if "auth-int" in qops else None)
        nonce = params["nonce"]
        count = self._nc[nonce] = self._nc.get(nonce, 0) + 1
        nc = f"{count:08x}"
        cnonce = secrets.token_hex(8)
        response = compute_response(
            algorithm=algorithm, username=creds.username, realm=realm, password=creds.password,
            method=method, uri=uri, nonce=nonce, qop=qop, nc=nc, cnonce=cnonce, body=body,
        )
        parts = [
            f"username={quote_string(creds.username)}", f"realm={quote_string(realm)}",
            f"nonce={quote_string(nonce)}", f"uri={quote_string(uri)}", f"response={quote_string(response)}",
            f"algorithm={algorithm}",
        ]
        if "opaque" in params:
            parts.append(f"opaque={quote_string(params['opaque'])}")
        if qop:
            parts += [f"qop={qop}", f"nc={nc}", f"cnonce={quote_string(cnonce)}"]
        return "Digest " + ", ".join(parts)


class Challenger:
    """Issues and checks Digest challenges for one realm (stateless nonces)."""

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        clock: Callable[[], float],
        *,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        secret: bytes | None = None,
    ) -> None:
        for algorithm in algorithms:
            _hash(algorithm)
        self.realm = realm
        self.users = dict(users)
        self.clock = clock
        self.algorithms = algorithms
        self.nonce_lifetime = nonce_lifetime
        self.secret = secret or secrets.token_bytes(32)

    def _nonce(self, issued: int) -> str:
        mac = hmac.new(self.secret, f"{issued}:{self.realm}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{issued:x}.{mac}"

    def challenges(self, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, the preferred algorithm first (RFC 8760 §2.4)."""
        nonce = self._nonce(int(self.clock()))
        return [
            f"Digest realm={quote_string(self.realm)}, nonce={quote_string(nonce)}, algorithm={algorithm}, "
            f"qop=\"auth\"" + (", stale=true" if stale else "")
            for algorithm in self.algorithms
        ]

    def check(self, authorization: str, method: str) -> tuple[bool, bool, str | None]:
        """Verify one Authorization value -> (valid, stale, username)."""
        try:
            scheme, params = parse_auth_params(authorization)
        except SipParseError:
            return (False, False, None)
        if scheme.lower() != "digest" or params.get("realm") != self.realm:
            return (False, False, None)
        username = params.get("username", "")
        nonce = params.get("nonce", "")
        issued_text, _, _ = nonce.partition(".")
        try:
            issued = int(issued_text, 16)
        except ValueError:
            return (False, False, username)
        if not hmac.compare_digest(nonce, self._nonce(issued)):
            return (False, False, username)
        algorithm = params.get("algorithm", "MD5")
        if algorithm not in self.algorithms or username not in self.users:
            return (False, False, username)
        expected = compute_response(
            algorithm=algorithm, username=username, realm=self.realm, password=self.users[username],
            method=method, uri=params.get("uri", ""), nonce=nonce, qop=params.get("qop"),
            nc=params.get("nc", ""), cnonce=params.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, params.get("response", "")):
            return (False, False, username)
        if self.clock() - issued > self.nonce_lifetime:
            return (False, True, username)
        return (True, False, username)
