"""Fixture: a Kamailio presence server (presence + presence_xml on db_text, in memory) on loopback.

``KamailioPresence(workdir, domain)`` writes the config (peers.md §3 recipe),
copies the db_text schema, starts ``kamailio -DD -E`` with a free UDP port,
and ``stop()`` kills it by PID.  ``started`` fires once the port is bound
(bounded polling on the reactor clock).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from typing import Any

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
    if (is_method("PUBLISH|SUBSCRIBE")) {{
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

MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
               "/usr/lib/kamailio/modules")


class KamailioPresence:
    def __init__(self, workdir: str, domain: str, *, reactor: Any = default_reactor) -> None:
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
        os.makedirs(os.path.join(workdir, "run"), exist_ok=True)
        self.config = os.path.join(workdir, "kamailio.cfg")
        with open(self.config, "w") as handle:
            handle.write(CONFIG.format(port=self.port, domain=domain, db=db, modules=self.modules))
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
