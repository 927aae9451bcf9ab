"""Interop tests against real peers nobody here wrote (Prosody, sipp, Kamailio, baresip, slixmpp).

The fixtures start each peer on loopback.  When a peer is not installed the
test is skipped on a developer's machine but FAILS under ``CI=true``: CI
installs every peer, so a missing one is a broken CI, never a silent skip.
"""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import SkipTest


def in_ci() -> bool:
    """Whether we run under CI (``CI=true``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str) -> str:
    """The path of the peer program ``name``; skip (fail under CI) if absent."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"the real peer {name!r} is not installed (.ci/run installs it)"
        if in_ci():
            raise AssertionError(message)
        raise SkipTest(message)
    return path


def require_module(name: str):
    """Import the client library ``name``; skip (fail under CI) if absent."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        message = f"the client library {name!r} is not installed: {error}"
        if in_ci():
            raise AssertionError(message) from None
        raise SkipTest(message) from None
