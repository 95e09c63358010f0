"""The multi-host flows of tests/test_multihost.py between two network namespaces.

The daemon runs in namespace b and listens on b's end of a veth cable; the launcher runs in
namespace a and connects to it. Each side can reach the other only over that link, so this
is as close to two machines as one machine gets (/dev/shm, /tmp and pids stay shared, which
is what lets the test look at both hosts' files and processes). Needs root and iproute2;
skipped with the reason otherwise.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_multihost import check_remote_daemon_loss, check_two_hosts, run_launcher, start_daemon

from pinflow.tools import netns
from pinflow.tools.daemon_process import DaemonProcess

PORT = 7447


@dataclass
class Hosts:
    pair: netns.NamespacePair
    daemon: DaemonProcess
    endpoint: str

    @property
    def launcher_prefix(self) -> list[str]:
        return self.pair.exec_prefix(self.pair.a)


def _netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _wait_empty(pair: netns.NamespacePair, timeout: float = 10.0) -> dict[str, list[int]]:
    """Processes still in the pair's namespaces once they had ``timeout`` to end."""
    deadline = time.monotonic() + timeout
    while True:
        left = {ns: pair.pids(ns) for ns in (pair.a, pair.b)}
        if not any(left.values()) or time.monotonic() > deadline:
            return {ns: pids for ns, pids in left.items() if pids}
        time.sleep(0.1)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    """A fresh namespace pair with `pinflow daemon --machine b` in b; afterwards every
    process in it must have ended by itself and both namespaces must be gone."""
    reason = netns.available()
    if reason is not None:
        pytest.skip(f"needs Linux network namespaces: {reason}")
    with netns.namespace_pair() as pair:
        endpoint = f"tcp/{pair.addr_b}:{PORT}"
        daemon = start_daemon("b", endpoint, tmp_path, prefix=pair.exec_prefix(pair.b))
        try:
            yield Hosts(pair, daemon, endpoint)
        finally:
            daemon.stop()
        left = _wait_empty(pair)
        # (namespace_pair kills leftovers anyway; a test must not need it to.)
        assert not left, f"processes left in the namespaces: {left}"
    names = _netns_names()
    assert pair.a not in names and pair.b not in names, names


def test_two_hosts_in_separate_namespaces_deliver_intact_frames(hosts: Hosts,
                                                                 tmp_path: Path) -> None:
    run = run_launcher("two_hosts.yml", hosts.endpoint, tmp_path,
                       prefix=hosts.launcher_prefix, timeout=60)
    check_two_hosts(run, hosts.daemon)


def test_losing_the_remote_namespace_host_closes_remote_inputs(hosts: Hosts,
                                                               tmp_path: Path) -> None:
    check_remote_daemon_loss(hosts.daemon, hosts.endpoint, tmp_path,
                             prefix=hosts.launcher_prefix)


def test_the_daemon_is_reachable_only_over_the_link(hosts: Hosts, tmp_path: Path) -> None:
    """The check that the namespaces are real: from a, b's daemon is not on 127.0.0.1."""
    run = run_launcher("two_hosts.yml", f"tcp/127.0.0.1:{PORT}", tmp_path, "--daemon-timeout",
                       "1", prefix=hosts.launcher_prefix, timeout=30)
    assert run.returncode == 1, run.output
    assert "no `pinflow daemon --machine b` answered" in run.stderr
