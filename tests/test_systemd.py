"""The systemd unit shipped in conf/systemd/: systemd's own checker accepts it, and it says what the README says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, TestCase

UNIT = Path(__file__).resolve().parents[1] / "conf" / "systemd" / "cpimgw.service"
#: Where the unit expects the gateway's virtualenv (the README installs it there).
INSTALLED_TWISTD = "/opt/cpimgw/bin/twistd"


def unit_directives() -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat in a unit file, so not configparser)."""
    found: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            found.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        found[section].setdefault(key.strip(), []).append(value.strip())
    return found


class UnitFileTests(TestCase):
    def test_directives(self) -> None:
        unit = unit_directives()
        service = unit["Service"]
        self.assertEqual(service["User"], ["cpimgw"])
        self.assertEqual(service["Restart"], ["on-failure"])
        self.assertEqual(service["NoNewPrivileges"], ["yes"])
        self.assertEqual(service["ProtectSystem"], ["strict"])
        self.assertEqual(service["AmbientCapabilities"], ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(service["ReadWritePaths"], ["/var/lib/cpimgw"])
        self.assertEqual(service["WorkingDirectory"], ["/var/lib/cpimgw"])
        self.assertEqual(service["StateDirectory"], ["cpimgw"])  # i.e. /var/lib/cpimgw, owned by User=
        [exec_start] = service["ExecStart"]
        argv = exec_start.split()
        self.assertEqual(argv[0], INSTALLED_TWISTD)
        self.assertIn("--nodaemon", argv)
        self.assertIn("--logfile=-", argv)  # standard output: journald
        self.assertEqual(argv[argv.index("cpimgw") + 1:], ["--config", "/etc/cpimgw/cpimgw.toml"])
        self.assertEqual(service["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(unit["Install"]["WantedBy"], ["multi-user.target"])

    def test_command_line_is_twistd_s(self) -> None:
        # The options of ExecStart are ones twistd and the cpimgw plugin accept.
        from twisted.scripts.twistd import ServerOptions

        [exec_start] = unit_directives()["Service"]["ExecStart"]
        options = ServerOptions()
        # Everything but "--config FILE" (the file exists only where the gateway is installed).
        options.parseOptions(exec_start.split()[1:-2])
        self.assertTrue(options["nodaemon"])
        self.assertEqual(options.subCommand, "cpimgw")

    def test_systemd_analyze_verify(self) -> None:
        tool = shutil.which("systemd-analyze")
        if tool is None:
            raise SkipTest("systemd-analyze is not installed here (package systemd)")
        twistd = shutil.which("twistd", path=os.path.dirname(sys.executable))
        if twistd is None:
            raise SkipTest(f"no twistd beside {sys.executable}")
        # systemd-analyze checks that ExecStart's program exists: point it at this
        # checkout's twistd; every other line is verified as shipped.
        text = UNIT.read_text()
        self.assertIn(INSTALLED_TWISTD, text)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        unit = os.path.join(directory, "cpimgw.service")
        with open(unit, "w") as handle:
            handle.write(text.replace(INSTALLED_TWISTD, twistd))
        result = subprocess.run([tool, "verify", unit], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        # Warnings (an unknown or misspelt directive, a deprecated one) are failures too.
        self.assertEqual((result.stdout + result.stderr).strip(), "")

    def test_readme_installs_it(self) -> None:
        readme = (UNIT.parents[2] / "README.md").read_text()
        self.assertIn("conf/systemd/cpimgw.service", readme)
        self.assertIn("systemctl enable --now cpimgw", readme)

