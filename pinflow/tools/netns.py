"""Two Linux network namespaces joined by a veth cable: "two hosts" on one machine.

Multi-host runs are tested and benchmarked between namespaces instead of on 127.0.0.1
because a namespace has its own interfaces, addresses and ports: the wire then really
crosses a network link (with its own MTU and kernel path), and nothing but the wire can
reach the other "host". /dev/shm, /tmp and pids stay shared, which lets one test see both
sides' files and processes.

Everything is done with iproute2's ``ip`` and needs root. Each pair has unique names, so
concurrent users (parallel tests, a benchmark) never collide, and its addresses live only
inside its two namespaces (the veth is created inside namespace ``a``, so the machine's own
interfaces, routes and firewall are never touched). Deleting a namespace deletes its veth end,
and with it the cable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pinflow.errors import NetnsError

IP_TIMEOUT_S = 10.0
"""No ``ip`` call may hang a test or the benchmark."""



def _ip(*args: str) -> str:
    """Run ``ip ARGS``; NetnsError carrying ip's own message if it fails."""
    cmd = ["ip", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT_S,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"`{' '.join(cmd)}` failed: {exc}") from None
    if done.returncode != 0:
        raise NetnsError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): "
                         f"{done.stderr.strip() or done.stdout.strip() or 'no message'}")
    return done.stdout


@dataclass(frozen=True)
class NamespacePair:
    """Namespaces ``a`` and ``b``, linked by a veth whose ends have ``addr_a``/``addr_b``."""

    a: str
    b: str
    addr_a: str
    addr_b: str

    def exec_prefix(self, ns: str) -> list[str]:
        """Prepend to a command to run it inside namespace ``ns`` (``a`` or ``b``). ``ip
        netns exec`` execs the command in place (no fork), so the pid a Popen reports, and
        the signals sent to it, are the command's own."""
        self._check(ns)
        return ["ip", "netns", "exec", ns]

    def pids(self, ns: str) -> list[int]:
        """Processes whose network namespace is ``ns``: after a clean run, none."""
        self._check(ns)
        return _pids(ns)

    def _check(self, ns: str) -> None:
        if ns not in (self.a, self.b):
            raise ValueError(f"{ns!r} is not a namespace of this pair ({self.a}, {self.b})")


def _pids(ns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", ns).split()]


def _new_names() -> tuple[str, str, str, str, int]:
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    veth = secrets.token_hex(4)  # "pf" + 8 hex + "a" = 11 chars, under IFNAMSIZ (15)
    return f"pf-{tag}-a", f"pf-{tag}-b", f"pf{veth}a", f"pf{veth}b", secrets.randbelow(256)


@contextlib.contextmanager
def namespace_pair() -> Iterator[NamespacePair]:
    """Create a fresh pair; on exit (also on exceptions) kill what still runs in it and
    delete both namespaces. Names: ``pf-<pid>-<rand>-a``/``-b``; addresses: the two hosts
    of a random 10.231.N.0/30."""
    ns_a, ns_b, veth_a, veth_b, n = _new_names()
    pair = NamespacePair(ns_a, ns_b, f"10.231.{n}.1", f"10.231.{n}.2")
    created: list[str] = []
    failed = False
    try:
        for ns in (ns_a, ns_b):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("-n", ns_a, "link", "add", veth_a, "type", "veth", "peer", "name", veth_b,
            "netns", ns_b)
        for ns, dev, addr in ((ns_a, veth_a, pair.addr_a), (ns_b, veth_b, pair.addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield pair
    except BaseException:
        failed = True
        raise
    finally:
        _teardown(created, pending=failed)


def _teardown(namespaces: list[str], *, pending: bool) -> None:
    """Delete ``namespaces``. A process left inside would keep a deleted namespace (and its
    veth) alive unseen, so leftovers are killed first: they can only be ours, the names are
    unique to this pair. Errors are raised only when no other exception is on its way."""
    problems = []
    for ns in namespaces:
        _kill_leftovers(ns)
        try:
            _ip("netns", "delete", ns)
        except NetnsError as exc:
            problems.append(str(exc))
    if problems and not pending:
        raise NetnsError("; ".join(problems))


def _kill_leftovers(ns: str) -> None:
    try:
        pids = _pids(ns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _pids(ns)
    except NetnsError:
        return


@functools.cache
def available() -> str | None:
    """None if namespace pairs work here, else why not (for skips and the benchmark).
    Creating and deleting one pair is the only reliable test (containers without
    CAP_SYS_ADMIN, kernels without veth, read-only /run/netns); the answer is cached."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    try:
        with namespace_pair():
            pass
    except NetnsError as exc:
        return f"cannot create network namespaces: {exc}"
    return None
