"""Fixtures of the end-to-end tests: the real peers and the gateway as an operator runs them.

- :class:`Prosody` and :class:`Kamailio` extend the interop fixtures
  (:mod:`tests.interop.prosody`, :mod:`tests.interop.kamailio`) but run the
  peer configurations shipped in ``conf/peers/`` -- the same files the README
  walkthrough starts -- with only their ports (and Kamailio's module
  directory) replaced by free ones.
- :class:`Gateway` writes a configuration generated from
  ``conf/three-networks.toml`` (:func:`gateway_config`) and starts
  ``twistd -n --pidfile= --logfile=LOG cpimgw --config FILE`` as a
  child process (``twistd`` on ``sys.executable``), waits for its ``started`` log line (bounded, polled on the
  reactor), and stops it with SIGTERM (SIGKILL after a bounded wait).
- :func:`run_sipp` runs one sipp scenario (:mod:`tests.interop.sipp`) with
  its SIP messages traced to a file; :func:`sip_messages` reads them back.

Nothing here sleeps in the reactor thread: every wait is ``deferLater``
polling with a bound.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Iterable

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from tests.interop import in_ci, require_program
from tests.interop.kamailio import MODULE_DIRS, KamailioPresence
from tests.interop.prosody import ProsodyServer, free_port, port_open, wait_until
from tests.interop.sipp import SippProcess, _Collect
from tests.interop.sipp import free_port as free_udp_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
THREE_NETWORKS = CONF / "three-networks.toml"
PROSODY_CFG = CONF / "peers" / "prosody.cfg.lua"
KAMAILIO_CFG = CONF / "peers" / "kamailio.cfg"

#: The domains of conf/three-networks.toml.
XMPP_DOMAIN = "xmpp.localhost"
GW_DOMAIN = "gw.localhost"
SIP_DOMAIN = "sip.localhost"
PRIM_DOMAIN = "prim.localhost"
PRIM_USERS = {"carol": "carolpw", "dave": "davepw"}


def replace_each(text: str, replacements: Iterable[tuple[str, str]], source: str) -> str:
    """Replace each ``old`` by ``new`` in ``text``; every ``old`` must be there (the example file is checked)."""
    for old, new in replacements:
        # "port = 5060" must not match inside "port = 50601", a free port an earlier
        # replacement wrote: an ``old`` that ends in a digit is not followed by one.
        pattern = re.compile(re.escape(old) + (r"(?!\d)" if old[-1:].isdigit() else ""))
        text, count = pattern.subn(lambda _match: new, text)
        if not count:
            raise AssertionError(f"{source} no longer contains {old!r}: update tests/e2e/peers.py with it")
    return text


def xmpp_jid_of(uri_user: str, domain: str) -> str:
    """How an XMPP user sees ``uri_user@domain`` of another network (XEP-0106 under the gateway domain)."""
    return f"{uri_user}\\40{domain}@{GW_DOMAIN}"


# -- Prosody ---------------------------------------------------------------------------------------------------


class Prosody(ProsodyServer):
    """Prosody on ``conf/peers/prosody.cfg.lua`` with free client and component ports."""

    def __init__(self) -> None:
        super().__init__(host=XMPP_DOMAIN, component_domain=GW_DOMAIN, secret="s3cret")
        text = replace_each(PROSODY_CFG.read_text(), [
            ("c2s_ports = { 5222 }", f"c2s_ports = {{ {self.c2s_port} }}"),
            ("component_ports = { 5347 }", f"component_ports = {{ {self.component_port} }}"),
        ], str(PROSODY_CFG))
        with open(self.config, "w") as handle:
            handle.write(text)


# -- Kamailio --------------------------------------------------------------------------------------------------


class Kamailio(KamailioPresence):
    """Kamailio on ``conf/peers/kamailio.cfg`` (registrar, presence server, MESSAGE relay for sip.localhost).

    Uses :class:`KamailioPresence`'s ``started``/``stop``/``log``; only the
    configuration differs (a file of the repository instead of the interop
    fixture's text).
    """

    def __init__(self, workdir: str, *, reactor: Any = default_reactor) -> None:  # noqa: D107
        self.path = require_program("kamailio")
        self.modules = next((d for d in MODULE_DIRS if os.path.exists(os.path.join(d, "presence.so"))), None)
        if self.modules is None:
            message = "kamailio-presence-modules is not installed (presence.so not found)"
            if in_ci():
                raise AssertionError(message)
            from twisted.trial.unittest import SkipTest

            raise SkipTest(message)
        self.reactor = reactor
        self.workdir = workdir
        self.port = free_udp_port()
        shutil.copytree("/usr/share/kamailio/dbtext/kamailio", os.path.join(workdir, "db"))
        os.makedirs(os.path.join(workdir, "run"), exist_ok=True)
        self.config = os.path.join(workdir, "kamailio.cfg")
        text = replace_each(KAMAILIO_CFG.read_text(), [
            ("listen=udp:127.0.0.1:5070", f"listen=udp:127.0.0.1:{self.port}"),
            ("listen=tcp:127.0.0.1:5070", f"listen=tcp:127.0.0.1:{self.port}"),
            ("sip:pres@127.0.0.1:5070", f"sip:pres@127.0.0.1:{self.port}"),
            ('mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules"', f'mpath="{self.modules}"'),
        ], str(KAMAILIO_CFG))
        with open(self.config, "w") as handle:
            handle.write(text)
        self.ended: Deferred = Deferred()
        self.protocol = _Collect(self.ended)
        # In its own process group (setsid execs it, same pid): stopping kills the worker
        # children too, which would otherwise keep the output pipe -- and the test -- open.
        setsid = require_program("setsid")
        argv = [setsid, self.path, "-DD", "-E", "-f", self.config, "-Y", os.path.join(workdir, "run"),
                "-P", os.path.join(workdir, "run", "kamailio.pid"), "-m", "32", "-M", "8"]
        self.process = reactor.spawnProcess(self.protocol, setsid, argv, env={"PATH": "/usr/sbin:/usr/bin:/bin"},
                                            path=workdir)

    def _kill(self) -> None:
        """SIGKILL the whole process group (the main process and its workers)."""
        if not self.ended.called:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass


# -- the gateway -----------------------------------------------------------------------------------------------


def gateway_config(*, xmpp_component_port: int, sip_port: int, kamailio_port: int, prim_s2s_port: int,
                   prim_c2s_port: int, name: str = "three-networks",
                   extra: Iterable[tuple[str, str]] = ()) -> str:
    """``conf/three-networks.toml`` with its ports replaced (and any ``extra`` replacements)."""
    return replace_each(THREE_NETWORKS.read_text(), [
        ('name = "three-networks"', f'name = "{name}"'),
        ("port = 5347", f"port = {xmpp_component_port}"),
        ("port = 5060", f"port = {sip_port}"),
        ('"sip:127.0.0.1:5070;transport=udp"', f'"sip:127.0.0.1:{kamailio_port};transport=udp"'),
        ("s2s_port = 5780", f"s2s_port = {prim_s2s_port}"),
        ("c2s_port = 5781", f"c2s_port = {prim_c2s_port}"),
        *extra,
    ], str(THREE_NETWORKS))


#: ``twistd`` run by ``sys.executable`` (what the venv's ``bin/twistd`` script does).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())"


class Gateway:
    """One cpimgw process started by twistd with a configuration file, in its own directory."""

    def __init__(self, workdir: str, config_text: str, *, reactor: Any = default_reactor) -> None:
        self.reactor = reactor
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.config = os.path.join(workdir, "gateway.toml")
        self.logfile = os.path.join(workdir, "twistd.log")
        with open(self.config, "w") as handle:
            handle.write(config_text)
        self.ended: Deferred = Deferred()
        self.protocol = _Collect(self.ended)
        self.exit_code: int | None = None
        self.ended.addCallback(self._record_exit)
        self.process: Any = None

    def _record_exit(self, result: tuple[int | None, str]) -> tuple[int | None, str]:
        self.exit_code = result[0]
        return result

    def log(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def count_in_log(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    @inlineCallbacks
    def start(self, *, ready: Iterable[str] = (), timeout: float = 30.0):  # type: ignore[no-untyped-def]
        """Spawn twistd; fire once the "started" line (and every ``ready`` line) is in the log."""
        # ``python -m twisted`` is the ``twist`` runner (no -n/--pidfile); this is ``twistd`` itself,
        # on the interpreter running the tests.
        argv = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", f"--logfile={self.logfile}",
                "cpimgw", "--config", self.config]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        env.pop("CPIMGW_PRIM_PASSWORD", None)
        self.process = self.reactor.spawnProcess(self.protocol, sys.executable, argv, env=env, path=self.workdir)
        wanted = [r"cpimgw \S+ started: adapters", *ready]

        def ready_or_dead() -> bool:
            if self.ended.called:
                raise AssertionError(f"the gateway exited while starting (status {self.exit_code}):\n"
                                     f"{self.log()[-4000:]}\n{self.protocol.output.decode('utf-8', 'replace')[-2000:]}")
            text = self.log()
            return all(re.search(p, text) for p in wanted)

        try:
            yield wait_until(ready_or_dead, timeout, 0.05, what="the gateway to start")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- gateway log ---\n{self.log()[-4000:]}") from None

    @inlineCallbacks
    def stop(self):  # type: ignore[no-untyped-def]
        """SIGTERM, then wait (at most 15 s, then SIGKILL); fires with the exit status."""
        if self.process is None:
            return None
        if not self.ended.called:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
            except (OSError, TypeError):
                pass
            try:
                yield wait_until(lambda: self.ended.called, 15.0, 0.05, what="the gateway to exit")
            except AssertionError:
                try:
                    os.kill(self.process.pid, signal.SIGKILL)
                except (OSError, TypeError):
                    pass
                yield wait_until(lambda: self.ended.called, 5.0, 0.05, what="the gateway to die")
        return self.exit_code


# -- sipp -----------------------------------------------------------------------------------------------------


def run_sipp(scenario: str, args: list[str], workdir: str, *, timeout: float = 30.0,
             reactor: Any = default_reactor) -> SippProcess:
    """Start sipp on ``scenario`` in a fresh ``workdir`` with every SIP message traced to ``messages.log``."""
    os.makedirs(workdir, exist_ok=True)
    trace = ["-trace_msg", "-message_file", os.path.join(workdir, "messages.log")]
    return SippProcess(scenario, [*args, *trace], workdir, timeout=timeout, reactor=reactor)


#: sipp's trace entry header: "----- DATE\nUDP message sent (334 bytes):\n\n" (or "received").
_TRACE_HEADER = re.compile(r"^-{20,} [^\n]*\n[^\n]*message (?:sent|received)[^\n]*:\n\n", re.M)


def sip_messages(workdir: str) -> list[bytes]:
    """The SIP messages sipp traced in ``workdir`` (sent and received), in order, as octets."""
    try:
        with open(os.path.join(workdir, "messages.log"), "rb") as handle:
            text = handle.read().decode("latin-1")
    except OSError:
        return []
    parts = _TRACE_HEADER.split(text)[1:]
    # Each traced message is followed by exactly one "\n" of the trace itself.
    return [(p[:-1] if p.endswith("\n") else p).encode("latin-1") for p in parts]


def sip_body(message: bytes) -> bytes:
    """The body of one SIP message (after the blank line, Content-Length octets)."""
    head, _, body = message.partition(b"\r\n\r\n")
    match = re.search(rb"^(?:Content-Length|l)\s*:\s*(\d+)", head, re.I | re.M)
    return body[: int(match.group(1))] if match else body


def sip_header(message: bytes, name: str) -> str | None:
    head = message.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def traced_requests(workdir: str, method: str) -> list[bytes]:
    """The ``method`` requests sipp traced in ``workdir`` (received by a UAS, sent by a UAC).

    Retransmissions (the same octets again) are listed once.
    """
    found: list[bytes] = []
    for message in sip_messages(workdir):
        if message.startswith(method.encode() + b" ") and message not in found:
            found.append(message)
    return found


PIDF_NS = "urn:ietf:params:xml:ns:pidf"


def tuple_with_note(document: bytes, note: str) -> tuple[str, str]:
    """(tuple id, basic status) of the PIDF tuple whose ``<note>`` is ``note`` (RFC 3863 §4.1)."""
    from lxml import etree

    root = etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))
    for element in root.iter(f"{{{PIDF_NS}}}tuple"):
        if any((n.text or "") == note for n in element.iter(f"{{{PIDF_NS}}}note")):
            basic = element.find(f"{{{PIDF_NS}}}status/{{{PIDF_NS}}}basic")
            return element.get("id"), (basic.text or "").strip() if basic is not None else ""
    for element in root.iter(f"{{{PIDF_NS}}}note"):  # a person-level note (RPID)
        if (element.text or "") == note:
            basic = root.find(f".//{{{PIDF_NS}}}basic")
            return "", (basic.text or "").strip() if basic is not None else ""
    raise AssertionError(f"no tuple with the note {note!r} in {document!r}")


__all__ = [
    "Gateway", "Kamailio", "Prosody", "free_port", "free_udp_port", "gateway_config", "port_open", "replace_each",
    "run_sipp", "sip_body", "sip_header", "sip_messages", "traced_requests", "tuple_with_note", "wait_until",
    "xmpp_jid_of",
]

