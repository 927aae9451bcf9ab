"""A real IRC server for the tests: Debian's ``ngircd`` on loopback, its own configuration, free ports.

:class:`NgIRCd` writes an ``ngircd.conf`` (a plain port and, with a
certificate, a TLS port; no PAM, no ident, no DNS, no system include
directory), starts ``ngircd -n -f FILE`` as a child process and waits
(bounded, polled on the reactor) until both ports accept connections.
``stop()`` sends SIGTERM (SIGKILL after a bounded wait).

When ``ngircd`` is not installed the test is skipped on a developer's
machine and FAILS under ``CI=true`` (the project's ``.ci/run`` installs it).

:class:`IRCUser` is an IRC user for the tests: a ``twisted.words``
``IRCClient`` that records the PRIVMSGs and NOTICEs it receives.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet import reactor as default_reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import SkipTest
from twisted.words.protocols import irc

WAIT = 15.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_ngircd() -> str:
    path = shutil.which("ngircd") or next((p for p in ("/usr/sbin/ngircd", "/usr/bin/ngircd") if os.access(p, os.X_OK)),
                                          None)
    if path is None:
        message = "the real peer 'ngircd' is not installed (.ci/run installs it)"
        if in_ci():
            raise AssertionError(message)
        raise SkipTest(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@defer.inlineCallbacks
def wait_until(predicate: Any, timeout: float, step: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` on the reactor every ``step`` seconds, at most ``timeout`` seconds (a real peer)."""
    from twisted.internet.task import deferLater

    waited = 0.0
    while True:
        if predicate():
            return
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        yield deferLater(default_reactor, step, lambda: None)
        waited += step


class _Output(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output = (self.output + data)[-20000:]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(getattr(reason.value, "exitCode", None))


CONFIG = """\
[Global]
    Name = {name}
    Info = cpimgw test server
    Listen = 127.0.0.1
    Ports = {port}
    MotdPhrase = "cpimgw test server"
[Limits]
    MaxConnectionsIP = 0
    MaxNickLength = 30
    PingTimeout = 120
    PongTimeout = 20
[Options]
    DNS = no
    Ident = no
    PAM = no
    IncludeDir = {workdir}/conf.d
    RequireAuthPing = no
    OperCanUseMode = yes
{ssl}"""

SSL = """\
[SSL]
    CertFile = {cert}
    KeyFile = {key}
    Ports = {tls_port}
"""


class NgIRCd:
    """ngircd serving ``name`` on a free plain port (and a free TLS port with ``cert``/``key``)."""

    def __init__(self, workdir: str, *, name: str = "irc.localhost", cert: str | None = None, key: str | None = None,
                 reactor: Any = default_reactor) -> None:
        self.path = require_ngircd()
        self.reactor = reactor
        self.workdir = workdir
        self.name = name
        os.makedirs(os.path.join(workdir, "conf.d"), exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if cert else None
        ssl = SSL.format(cert=cert, key=key, tls_port=self.tls_port) if cert else ""
        self.config = os.path.join(workdir, "ngircd.conf")
        with open(self.config, "w") as handle:
            handle.write(CONFIG.format(name=name, port=self.port, workdir=workdir, ssl=ssl))
        self.process: Any = None
        self.protocol = _Output()

    @defer.inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        self.process = self.reactor.spawnProcess(self.protocol, self.path, [self.path, "-n", "-f", self.config],
                                                 env={"PATH": "/usr/sbin:/usr/bin:/bin"}, path=self.workdir)
        ports = [p for p in (self.port, self.tls_port) if p]

        def ready() -> bool:
            if self.protocol.ended.called:
                raise AssertionError(f"ngircd exited while starting:\n{self.log()}")
            return all(port_open(p) for p in ports)

        yield wait_until(ready, WAIT, what="ngircd to listen")

    def log(self) -> str:
        return self.protocol.output.decode("utf-8", "replace")[-4000:]

    @defer.inlineCallbacks
    def stop(self):  # type: ignore[no-untyped-def]
        if self.process is None or self.protocol.ended.called:
            return
        try:
            os.kill(self.process.pid, signal.SIGTERM)
        except (OSError, TypeError):
            return
        try:
            yield wait_until(lambda: self.protocol.ended.called, 10.0, what="ngircd to exit")
        except AssertionError:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass
            yield wait_until(lambda: self.protocol.ended.called, 5.0, what="ngircd to die")


class IRCUser(irc.IRCClient):
    """An IRC user for the tests: records ``(sender nick, target, text)`` of every PRIVMSG and NOTICE."""

    def __init__(self, nickname: str) -> None:
        self.nickname = nickname
        self.username = nickname
        self.realname = f"test user {nickname}"
        self.received: list[tuple[str, str, str, str]] = []
        self.signed_on: defer.Deferred = defer.Deferred()
        self.lines: list[str] = []

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        self.lines.append(line.decode("utf-8", "replace"))
        super().lineReceived(line)

    def signedOn(self) -> None:  # noqa: N802
        self.signed_on.callback(self)

    def privmsg(self, user: str, channel: str, message: str) -> None:
        self.received.append(("PRIVMSG", user.split("!", 1)[0], channel, message))

    def noticed(self, user: str, channel: str, message: str) -> None:
        self.received.append(("NOTICE", user.split("!", 1)[0], channel, message))

    def action(self, user: str, channel: str, data: str) -> None:
        self.received.append(("ACTION", user.split("!", 1)[0], channel, data))

    def texts(self, command: str = "PRIVMSG", sender: str | None = None) -> list[str]:
        return [text for kind, who, _, text in self.received if kind == command and (sender is None or who == sender)]


@defer.inlineCallbacks
def connect_user(port: int, nickname: str, reactor: Any = default_reactor):  # type: ignore[no-untyped-def]
    """An :class:`IRCUser` signed on to the server on ``port`` (plain TCP on loopback)."""
    user = IRCUser(nickname)
    yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(_Single(user))
    yield user.signed_on.addTimeout(WAIT, reactor)
    return user


class _Single(protocol.Factory):
    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        return self.instance


def make_certificates(directory: str, dns_name: str) -> tuple[str, str, str]:
    """A test CA and a server certificate for ``dns_name`` signed by it: (ca.pem, cert.pem, key.pem) paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cpimgw-irc test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem"))
    with open(paths[0], "wb") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths  # type: ignore[return-value]
