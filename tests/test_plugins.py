"""Tests of the twistd plugin (``twisted/plugins/cpimgw_plugin.py``) and plugin discovery.

Also home of :func:`install_test_plugin`, which adds a temporary
``twisted/plugins/`` directory holding a test-only adapter factory to
``sys.path`` and ``twisted.plugins.__path__`` -- exactly how a third party
adds a protocol -- for the config, service and CLI tests.
"""

from __future__ import annotations

import os
import sys
import textwrap

import twisted.plugins
from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin, getPlugins
from twisted.python import usage
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from cpimgw.interfaces import IAdapterFactory, INativeCodec

#: The test plugin module: an adapter factory named "echo" whose adapter is a
#: real twisted Service listening on TCP (127.0.0.1, port 0 by default).
TEST_PLUGIN_SOURCE = textwrap.dedent(
    '''
    """Test-only cpimgw adapter plugin (written by tests/test_plugins.py)."""

    from twisted.application.service import Service
    from twisted.internet import defer
    from twisted.internet.protocol import Factory, Protocol
    from twisted.plugin import IPlugin
    from zope.interface import implementer

    from cpimgw.cpim.errors import ConfigError
    from cpimgw.cpim.operations import success
    from cpimgw.interfaces import IAdapter, IAdapterFactory, IMessaging

    #: What the adapters did, in order, for the tests: (event, name).
    EVENTS = []


    @implementer(IAdapter, IMessaging)
    class EchoAdapter(Service):
        def __init__(self, name, settings, bus):
            self.name = name
            self.domains = tuple(settings["domains"])
            self.settings = settings
            self.bus = bus
            self.port = None
            self.delivered = []

        @property
        def listening_addresses(self):
            return [self.port.getHost()] if self.port is not None else []

        def deliver(self, operation):
            self.delivered.append(operation)
            return defer.succeed(success(operation))

        def startService(self):
            EVENTS.append(("start", self.name))
            if self.settings["fail"]:
                return defer.fail(RuntimeError("echo refused to start: fail = true"))
            Service.startService(self)
            self.port = self.bus.reactor.listenTCP(
                self.settings["port"], Factory.forProtocol(Protocol), interface=self.settings["host"]
            )

        def stopService(self):
            EVENTS.append(("stop", self.name))
            Service.stopService(self)
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening) if port is not None else None


    @implementer(IAdapterFactory, IPlugin)
    class EchoFactory:
        def __init__(self, name, domain, enabled=True):
            self.name = name
            self.description = f"test adapter {name}"
            self.srv_labels = ("_" + name,)
            self._domain = domain
            self._enabled = enabled

        def defaults(self):
            return {
                "enabled": self._enabled,
                "domains": [self._domain],
                "host": "127.0.0.1",
                "port": 0,
                "fail": False,
            }

        def build(self, settings, bus):
            if not 0 <= settings["port"] <= 65535:
                raise ConfigError(f"must be a TCP port number, got {settings['port']}", key="port")
            return EchoAdapter(self.name, settings, bus)


    echo = EchoFactory("echo", "echo.test")
    ohce = EchoFactory("ohce", "ohce.test", enabled=False)
    '''
)


def install_test_plugin(case: TestCase, module: str = "cpimgw_testecho") -> object:
    """Make the test adapter plugins findable for the duration of ``case``.

    :return: the imported plugin module (its ``EVENTS`` list, ``echo`` and ``ohce`` factories).
    """
    base = case.mktemp()
    plugins = os.path.join(base, "twisted", "plugins")
    os.makedirs(plugins)
    with open(os.path.join(plugins, module + ".py"), "w") as handle:
        handle.write(TEST_PLUGIN_SOURCE)
    sys.path.insert(0, os.path.abspath(base))
    twisted.plugins.__path__.append(os.path.abspath(plugins))

    def cleanup() -> None:
        sys.path.remove(os.path.abspath(base))
        twisted.plugins.__path__.remove(os.path.abspath(plugins))
        sys.modules.pop("twisted.plugins." + module, None)

    case.addCleanup(cleanup)
    factories = {f.name: f for f in getPlugins(IAdapterFactory)}
    assert "echo" in factories, "test plugin not found"
    return sys.modules["twisted.plugins." + module]


def find_service_maker() -> object:
    for maker in getPlugins(IServiceMaker):
        if maker.tapname == "cpimgw":
            return maker
    raise AssertionError("the cpimgw IServiceMaker was not found")


class ServiceMakerTests(TestCase):
    """The IServiceMaker plugin."""

    def test_found(self) -> None:
        maker = find_service_maker()
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertTrue(IPlugin.providedBy(maker))
        self.assertEqual(maker.tapname, "cpimgw")
        self.assertIn("XMPP", maker.description)

    def test_options_config(self) -> None:
        maker = find_service_maker()
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("[presence]\nmax_duration = 7200\n")
        for argv in (["--config", path], ["-c", path], [f"--config={path}"]):
            options = maker.options()
            options.parseOptions(argv)
            self.assertEqual(options["config"], path)
            self.assertEqual(options["loaded"].presence.max_duration, 7200)

    def test_options_default(self) -> None:
        options = find_service_maker().options()
        options.parseOptions([])
        self.assertIsNone(options["config"])
        self.assertEqual(options["loaded"].presence.max_duration, 86400)

    def test_bad_config_usage_error(self) -> None:
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write('[presence]\nmax_duration = "abc"\n')
        options = find_service_maker().options()
        error = self.assertRaises(usage.UsageError, options.parseOptions, ["--config", path])
        self.assertEqual(str(error), f'{path}: presence.max_duration: must be a positive integer, got "abc"')

    def test_missing_config_usage_error(self) -> None:
        path = self.mktemp()
        options = find_service_maker().options()
        error = self.assertRaises(usage.UsageError, options.parseOptions, ["-c", path])
        self.assertEqual(str(error), f"{path}: cannot read: No such file or directory")

    def test_help(self) -> None:
        text = str(find_service_maker().options())
        self.assertIn("--config", text)
        self.assertIn("conf/cpimgw.toml", text)

    def test_plugin_module_imports_no_cpimgw(self) -> None:
        """Scanning plugins must not pull cpimgw: the plugin module imports it lazily."""
        import subprocess

        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = (
            "import sys, importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('p', {os.path.join(here, 'twisted', 'plugins', 'cpimgw_plugin.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'cpimgw'))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(out.stdout.strip(), "[]")


class DiscoveryTests(TestCase):
    """Core codecs and third-party adapters are found with getPlugins."""

    def test_core_codecs(self) -> None:
        codecs = {c.name: c for c in getPlugins(INativeCodec)}
        for name in ("cpim", "pidf"):
            self.assertIn(name, codecs)
            self.assertTrue(verifyObject(INativeCodec, codecs[name]))
            self.assertTrue(IPlugin.providedBy(codecs[name]))

    def test_third_party_adapter(self) -> None:
        install_test_plugin(self)
        factories = {f.name: f for f in getPlugins(IAdapterFactory)}
        self.assertTrue(verifyObject(IAdapterFactory, factories["echo"]))
        self.assertEqual(factories["echo"].srv_labels, ("_echo",))

    def test_twisted_own_plugins_still_load(self) -> None:
        names = {maker.tapname for maker in getPlugins(IServiceMaker)}
        self.assertTrue({"cpimgw", "web", "dns"} <= names, names)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = "from twisted.scripts.twistd import run; run()"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class _Collect(__import__("twisted.internet.protocol", fromlist=["ProcessProtocol"]).ProcessProtocol):
    """Collects a child's output; fires ``seen`` when ``marker`` appears, ``ended`` at exit."""

    def __init__(self, marker: bytes) -> None:
        from twisted.internet.defer import Deferred

        self.marker = marker
        self.output = b""
        self.seen: Deferred[None] = Deferred()
        self.ended: Deferred[object] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted name)
        self.output += data
        if not self.seen.called and self.marker in self.output:
            self.seen.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:  # noqa: N802 (Twisted name)
        if not self.seen.called:
            self.seen.errback(AssertionError("twistd ended before the marker:\n" + self.output.decode("utf-8", "replace")))
        self.ended.callback([reason])


class TwistdEndToEndTests(TestCase):
    """``twistd -n cpimgw`` as a real subprocess, from a directory outside the checkout."""

    timeout = 120

    def test_run_defaults_and_sigterm(self):  # type: ignore[no-untyped-def]
        from twisted.internet import reactor
        from twisted.internet.error import ProcessDone

        rundir = os.path.abspath(self.mktemp())
        os.makedirs(rundir)
        proto = _Collect(b"] cpimgw cpimgw started:")
        reactor.spawnProcess(
            proto,
            sys.executable,
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile=-", "cpimgw"],
            env=_env(),
            path=rundir,
        )

        def terminate(_: object) -> object:
            proto.transport.signalProcess("TERM")
            return proto.ended

        def ended(reasons: list) -> None:  # type: ignore[type-arg]
            reason = reasons[0]
            output = proto.output.decode("utf-8", "replace")
            self.assertIsInstance(reason.value, ProcessDone, output)  # type: ignore[attr-defined]
            self.assertEqual(reason.value.exitCode, 0, output)  # type: ignore[attr-defined]
            self.assertIn("cpimgw cpimgw stopped", output)
            self.assertNotIn("Traceback", output)
            self.assertTrue(os.path.exists(os.path.join(rundir, "cpimgw.sqlite")), os.listdir(rundir))

        d = proto.seen
        d.addTimeout(90, reactor)
        d.addCallback(terminate)
        d.addCallback(ended)

        def kill_on_error(failure):  # type: ignore[no-untyped-def]
            try:
                proto.transport.signalProcess("KILL")
            except Exception:
                pass
            return failure

        d.addErrback(kill_on_error)
        return d

    def test_bad_config_one_line(self) -> None:
        import subprocess

        rundir = os.path.abspath(self.mktemp())
        os.makedirs(rundir)
        with open(os.path.join(rundir, "x.toml"), "w") as handle:
            handle.write('[presence]\nmax_duration = "abc"\n')
        result = subprocess.run(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "cpimgw", "--config", "x.toml"],
            cwd=rundir, env=_env(), capture_output=True, text=True, timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        last = (result.stdout + result.stderr).rstrip("\n").splitlines()[-1]
        self.assertTrue(last.endswith(': x.toml: presence.max_duration: must be a positive integer, got "abc"'), last)
