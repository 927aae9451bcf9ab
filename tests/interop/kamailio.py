"""Fixture: a Kamailio presence server (presence + presence_xml on db_text, in memory) on loopback.

``KamailioPresence(workdir, domain)`` writes the config (peers.md §3 recipe),
copies the db_text schema, starts ``kamailio -DD -E`` with a free UDP port,
and ``stop()`` kills it by PID.  ``started`` fires once the port is bound
(bounded polling on the reactor clock).

With ``auth=DigestAuth(realm, from_domain, users)`` Kamailio also loads
``auth`` + ``auth_db`` on db_text (a ``subscriber`` table written from
``users``) and challenges (401, qop=auth) every request whose From domain is
``from_domain`` -- initial and in-dialog -- logging ``AUTH OK <method>
<user>`` for each accepted one; a MESSAGE is then answered 200.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
from typing import Any, Mapping

import attrs

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from twisted.trial.unittest import SkipTest

from tests.interop import in_ci, require_program
from tests.interop.sipp import _Collect, free_port

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:127.0.0.1:{port}
auto_aliases=no
alias="{domain}"
dns=no
rev_dns=no
mpath="{modules}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
{auth_modules}
modparam("presence", "db_url", "text://{db}")
modparam("presence", "subs_db_mode", 0)
modparam("presence", "publ_cache", 2)
modparam("presence", "server_address", "sip:pres@127.0.0.1:{port}")
modparam("presence_xml", "db_url", "text://{db}")
modparam("presence_xml", "force_active", 1)
modparam("presence_xml", "integrated_xcap_server", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_INFO", "$rm $ru from $si:$sp\\n");
{auth_route}    if (is_method("PUBLISH|SUBSCRIBE")) {{
        if (!t_newtran()) {{ sl_reply_error(); exit; }}
        if (is_method("PUBLISH")) {{ handle_publish(); }}
        else {{ handle_subscribe(); }}
        t_release();
        exit;
    }}
    sl_send_reply("404", "Not here");
    exit;
}}
"""

AUTH_MODULES = """loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "use_domain", 0)
"""

AUTH_ROUTE = """    if ($fd == "{from_domain}") {{
        if (!auth_check("{realm}", "subscriber", "0")) {{ auth_challenge("{realm}", "1"); exit; }}
        xlog("L_INFO", "AUTH OK $rm $au\\n");
        consume_credentials();
        if (is_method("MESSAGE")) {{ sl_send_reply("200", "OK"); exit; }}
    }}
"""


@attrs.frozen
class DigestAuth:
    """Kamailio challenges requests From ``from_domain`` in ``realm``; ``users`` = {name: password}."""

    realm: str
    from_domain: str
    users: Mapping[str, str]


def write_subscribers(db: str, auth: DigestAuth) -> None:
    """The db_text ``subscriber`` table (ha1 = MD5(user:realm:password), RFC 2617)."""
    rows = ["id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) "]
    for number, (user, password) in enumerate(sorted(auth.users.items()), start=1):
        ha1 = hashlib.md5(f"{user}:{auth.realm}:{password}".encode()).hexdigest()  # noqa: S324
        ha1b = hashlib.md5(f"{user}@{auth.realm}:{auth.realm}:{password}".encode()).hexdigest()  # noqa: S324
        rows.append(f"{number}:{user}:{auth.realm}:{password}:{ha1}:{ha1b}")
    with open(os.path.join(db, "subscriber"), "w") as handle:
        handle.write("\n".join(rows) + "\n")


MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
               "/usr/lib/kamailio/modules")


class KamailioPresence:
    def __init__(self, workdir: str, domain: str, *, reactor: Any = default_reactor,
                 auth: DigestAuth | None = None) -> None:
        self.path = require_program("kamailio")
        self.modules = next((d for d in MODULE_DIRS if os.path.exists(os.path.join(d, "presence.so"))), None)
        if self.modules is None:
            message = "kamailio-presence-modules is not installed (presence.so not found)"
            if in_ci():
                raise AssertionError(message)
            raise SkipTest(message)
        self.reactor = reactor
        self.workdir = workdir
        self.port = free_port()
        db = os.path.join(workdir, "db")
        shutil.copytree("/usr/share/kamailio/dbtext/kamailio", db)
        if auth is not None:
            write_subscribers(db, auth)
        os.makedirs(os.path.join(workdir, "run"), exist_ok=True)
        self.config = os.path.join(workdir, "kamailio.cfg")
        auth_modules = AUTH_MODULES.format(db=db) if auth is not None else ""
        auth_route = AUTH_ROUTE.format(realm=auth.realm, from_domain=auth.from_domain) if auth is not None else ""
        with open(self.config, "w") as handle:
            handle.write(CONFIG.format(port=self.port, domain=domain, db=db, modules=self.modules,
                                       auth_modules=auth_modules, auth_route=auth_route))
        self.ended: Deferred = Deferred()
        self.protocol = _Collect(self.ended)
        argv = [self.path, "-DD", "-E", "-f", self.config, "-Y", os.path.join(workdir, "run"),
                "-P", os.path.join(workdir, "run", "kamailio.pid"), "-m", "32", "-M", "8"]
        self.process = reactor.spawnProcess(self.protocol, self.path, argv, env={"PATH": "/usr/sbin:/usr/bin:/bin"},
                                            path=workdir)

    @inlineCallbacks
    def started(self):  # type: ignore[no-untyped-def]
        for _ in range(100):  # at most 10 s
            if self.ended.called:
                raise AssertionError("kamailio exited: " + self.protocol.output.decode("utf-8", "replace")[-2000:])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", self.port))
            except OSError:
                return self.port
            yield deferLater(self.reactor, 0.1, lambda: None)
        raise AssertionError("kamailio did not bind its port in 10 s")

    def stop(self) -> Deferred:
        if not self.ended.called:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
            except (OSError, TypeError):
                pass
            killer = self.reactor.callLater(5, self._kill)

            def cancel(result: Any) -> Any:
                if killer.active():
                    killer.cancel()
                return result

            self.ended.addBoth(cancel)
        return self.ended

    def _kill(self) -> None:
        if not self.ended.called:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass

    @property
    def log(self) -> str:
        return self.protocol.output.decode("utf-8", "replace")
