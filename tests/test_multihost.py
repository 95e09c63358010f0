"""Dataflows over several hosts, each host's share run by `pinflow daemon`.

Here the "hosts" are a daemon and a launcher on this machine linked by TCP on 127.0.0.1:
each keeps its own mesh, run id, run lock and pools (as on separate machines), so what
crosses between them can only be what the wire carries. tests/test_netns.py runs the same
flows between separate network namespaces.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import DATAFLOWS, Run, assert_no_orphans

from pinflow.errors import LaunchError
from pinflow.protocol import messages, streams
from pinflow.protocol.keys import WIRE_ROOT
from pinflow.tools import top
from pinflow.tools.daemon_process import DaemonProcess
from pinflow.transport import codec
from pinflow.transport.cleanup import clean_dead_runs
from pinflow.transport.segment import shm_dir
from pinflow.transport.wire import open_wire


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daemon(machine: str, endpoint: str, tmp_path: Path,
                 prefix: Sequence[str] = ()) -> DaemonProcess:
    """`pinflow daemon --machine MACHINE --listen ENDPOINT`, its nodes' results in
    tmp_path/results; the test fails if it does not start."""
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    try:
        return DaemonProcess(machine, endpoint, log=tmp_path / f"daemon-{machine}.log",
                             log_dir=tmp_path / f"logs-{machine}", prefix=prefix,
                             cwd=tmp_path,
                             env={**os.environ, "PINFLOW_TEST_RESULTS": str(results)})
    except LaunchError as exc:
        pytest.fail(f"{exc}\n{(tmp_path / f'daemon-{machine}.log').read_text()}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[str], tuple[DaemonProcess, str]]]:
    """Start `pinflow daemon --machine NAME` on a free loopback port; returns it and the
    endpoint a launcher connects to."""
    started: list[DaemonProcess] = []

    def start(machine: str) -> tuple[DaemonProcess, str]:
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        started.append(start_daemon(machine, endpoint, tmp_path))
        return started[-1], endpoint

    yield start
    for process in started:
        process.stop()


def run_id_of(run: Run) -> str:
    match = re.search(r"run ([0-9a-f]{12}) started", run.stdout)
    assert match, run.output
    return match.group(1)


def start_launcher(flow: str, endpoint: str, tmp_path: Path, *args: str,
                   prefix: Sequence[str] = (), stdout: int = subprocess.PIPE,
                   ) -> subprocess.Popen[str]:
    """`pinflow run tests/dataflows/FLOW --connect ENDPOINT ARGS` in its own session
    (killpg ends it and its group), results in tmp_path/results; ``prefix`` as for
    DaemonProcess."""
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "pinflow", "run", str(DATAFLOWS / flow),
         "--connect", endpoint, *args, "--log-dir", str(tmp_path / "logs")],
        stdout=stdout, stderr=stdout, text=True, cwd=tmp_path,
        env={**os.environ, "PINFLOW_TEST_RESULTS": str(results)}, start_new_session=True)


def run_launcher(flow: str, endpoint: str, tmp_path: Path, *args: str,
                 prefix: Sequence[str] = (), timeout: float = 60) -> Run:
    """start_launcher, waited for; killed (and the test failed) past ``timeout``."""
    launcher = start_launcher(flow, endpoint, tmp_path, *args, prefix=prefix)
    try:
        out, err = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        out, err = launcher.communicate()
        pytest.fail(f"pinflow run {flow} did not finish in {timeout}s:\n{out}\n{err}")
    return Run(launcher.returncode, out, err, tmp_path / "results")


def check_two_hosts(run: Run, host_b: DaemonProcess, *, streams: bool = True) -> None:
    """What a run of two_hosts.yml must show: intact frames, read zero-copy from a pool of
    the consumer's own host, each exported once, the daemon's output relayed. Host b's
    daemon listens, so b takes a direct stream (unless ``streams`` is off there); the
    launcher's host only connects, so what it imports comes over zenoh."""
    assert run.returncode == 0, run.output + host_b.output
    run_id = run_id_of(run)
    assert "on 2 hosts" in run.stdout
    for consumer, local_run in (("consumer_b1", f"{run_id}-b"), ("consumer_b2", f"{run_id}-b"),
                                ("consumer_a", run_id)):
        seen = run.result(consumer)
        assert seen["indices"] == list(range(20)), (consumer, seen)
        assert seen["torn"] == seen["not_zero_copy"] == seen["wrong_type"] == 0
        # Zero-copy from a pool of the consumer's own host, never the producer's.
        assert seen["segments"], seen
        prefix = f"{shm_dir()}/pinflow-{local_run}."
        assert all(s.startswith(prefix) for s in seen["segments"])
    # Sent once to host b although two nodes there consume it.
    streamed = 20 if streams else 0
    assert (f"wire: exported producer/frames: 20 sent once to the wire ({streamed} on direct "
            "streams), 0 dropped") in run.stdout
    assert ("wire: imported producer_b/frames: 20 received and republished on this host (0 "
            "from a direct stream), 0 dropped") in run.stdout
    assert ("wire: exported producer_b/frames: 20 sent once to the wire (0 on direct "
            "streams), 0 dropped") in host_b.output
    imported = (f"wire: imported producer/frames: 20 received and republished on this host "
                f"({streamed} from a direct stream), 0 dropped")
    assert imported in host_b.output
    # What the daemon says reaches the launcher's output too.
    assert f"pinflow@b | {imported}" in run.stdout
    assert f"run {run_id}-b: 3 node(s)" in host_b.output


def test_two_hosts_deliver_intact_frames_over_host_local_pools(
        pinflow: Callable[..., Run], daemon: Callable) -> None:
    host_b, endpoint = daemon("b")
    check_two_hosts(pinflow("run", "two_hosts.yml", "--connect", endpoint, timeout=90), host_b)


def test_with_streams_off_every_message_crosses_over_zenoh(
        pinflow: Callable[..., Run], daemon: Callable, monkeypatch) -> None:
    """PINFLOW_WIRE_STREAMS=0 on host b (a firewall that lets only the wire's port through):
    b takes no stream, and its messages come over zenoh, intact and counted the same."""
    monkeypatch.setenv("PINFLOW_WIRE_STREAMS", "0")
    host_b, endpoint = daemon("b")
    monkeypatch.delenv("PINFLOW_WIRE_STREAMS")
    check_two_hosts(pinflow("run", "two_hosts.yml", "--connect", endpoint, timeout=90), host_b,
                    streams=False)


def test_missing_daemon_is_named(pinflow: Callable[..., Run]) -> None:
    run = pinflow("run", "two_hosts.yml", "--connect", f"tcp/127.0.0.1:{free_port()}",
                  "--daemon-timeout", "1", timeout=60)
    assert run.returncode == 1
    assert "no `pinflow daemon --machine b` answered" in run.stderr
    assert "consumer_b1, consumer_b2, producer_b" in run.stderr
    assert "Traceback" not in run.output


def test_machines_need_a_wire_endpoint(pinflow: Callable[..., Run]) -> None:
    run = pinflow("run", "two_hosts.yml", timeout=60)
    assert run.returncode == 1
    assert "give `pinflow run` a wire endpoint" in run.stderr
    assert "Traceback" not in run.output


def wait_for_frames(results: Path, consumer: str, count: int,
                    launcher: subprocess.Popen[str]) -> None:
    """Until ``consumer`` (a frame_consumer.py node) has read ``count`` frames; the test
    fails if the launcher ended first or 40 s went by."""
    progress = results / f"{consumer}.progress"
    deadline = time.monotonic() + 40
    while not (progress.exists() and int(progress.read_text() or 0) >= count):
        assert time.monotonic() < deadline, f"no frames reached {consumer}"
        assert launcher.poll() is None, "the launcher ended"
        time.sleep(0.05)


def check_remote_daemon_loss(host_b: DaemonProcess, endpoint: str, tmp_path: Path,
                             prefix: Sequence[str] = ()) -> None:
    """Run remote_loss.yml, SIGKILL b's daemon mid-stream: consumer_a sees its input
    closed, the launcher fails naming the lost machine, b's nodes die with their daemon,
    and `pinflow clean` removes the pools the dead host could not."""
    results = tmp_path / "results"
    launcher = start_launcher("remote_loss.yml", endpoint, tmp_path, "--stop-after", "40",
                              prefix=prefix)
    try:
        wait_for_frames(results, "consumer_a", 10, launcher)
        remote_pids = [int((results / f"{n}.pid").read_text())
                       for n in ("producer_b", "consumer_b")]
        host_b.process.kill()  # the whole host goes: its nodes die with their daemon
        out, err = launcher.communicate(timeout=40)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    seen = (results / "consumer_a.json").read_text()
    assert '"closed": true' in seen, seen
    assert launcher.returncode == 1, out + err
    assert "machine 'b' was lost" in err
    assert "consumer_a' failed" not in err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert_no_orphans(remote_pids)
            break
        except AssertionError:
            time.sleep(0.1)
    assert_no_orphans(remote_pids)
    # The killed daemon could not unlink its host's pools; `pinflow clean` can.
    run_id = re.search(r"run ([0-9a-f]{12}) started", out).group(1)
    left = clean_dead_runs()
    assert any(name.startswith(f"pinflow-{run_id}-b.") for name in left), left


def test_killing_the_remote_daemon_closes_remote_inputs(daemon: Callable,
                                                        tmp_path: Path) -> None:
    host_b, endpoint = daemon("b")
    check_remote_daemon_loss(host_b, endpoint, tmp_path)


def test_a_lost_launcher_stops_the_remote_nodes(daemon: Callable, tmp_path: Path) -> None:
    host_b, endpoint = daemon("b")
    results = tmp_path / "results"
    launcher = start_launcher("remote_loss.yml", endpoint, tmp_path, "--stop-after", "40",
                              stdout=subprocess.DEVNULL)
    try:
        wait_for_frames(results, "consumer_b", 5, launcher)
        remote_pids = [int((results / f"{n}.pid").read_text())
                       for n in ("producer_b", "consumer_b")]
        os.killpg(launcher.pid, signal.SIGKILL)  # launcher and its local nodes vanish
        launcher.wait(timeout=10)
        # The daemon stops the run's nodes on its host (STOP, they exit cleanly) ...
        deadline = time.monotonic() + 15
        while any(psutil.pid_exists(p) for p in remote_pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert_no_orphans(remote_pids)
        assert '"closed"' in (results / "consumer_b.json").read_text()
        # ... cleans up after them, and keeps serving.
        assert host_b.process.poll() is None
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    deadline = time.monotonic() + 10
    while not re.search(r"run [0-9a-f]{12}-b: 2 node\(s\)", host_b.output):
        assert time.monotonic() < deadline, host_b.output
        time.sleep(0.1)
    # The launcher was killed: its own host's pools are for `pinflow clean`.
    clean_dead_runs()


def test_remote_nodes_statistics_reach_the_launchers_host(daemon: Callable,
                                                          tmp_path: Path) -> None:
    """`pinflow top` on the launcher's host shows the whole run: b's nodes report there,
    tagged with their machine."""
    host_b, endpoint = daemon("b")
    launcher = start_launcher("remote_loss.yml", endpoint, tmp_path, "--stop-after", "40")
    try:
        wait_for_frames(tmp_path / "results", "consumer_a", 10, launcher)
        runs = [r for r in top.live_runs() if not r.endswith("-b")]  # b's share: -b
        assert len(runs) == 1, top.live_runs()
        nodes: dict = {}
        for _ in range(3):  # the first window can fall before every node's first report
            found = top.collect(runs, 2.5).runs.get(runs[0])
            nodes = found.nodes if found else {}
            if set(nodes) == {"producer_b", "consumer_b", "consumer_a"}:
                break
        assert set(nodes) == {"producer_b", "consumer_b", "consumer_a"}, nodes
        assert nodes["producer_b"].machine == nodes["consumer_b"].machine == "b"
        assert nodes["consumer_a"].machine is None
        assert nodes["producer_b"].outputs["frames"].sent_shm > 0
        table = top.render(top.Snapshot({runs[0]: top.RunStats(nodes)}, 0))
        assert "produce~@b" in table and "consume~@b" in table, table  # NODE is 10 wide
    finally:
        launcher.send_signal(signal.SIGINT)  # a graceful stop of every host
        try:
            out, err = launcher.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            out, err = launcher.communicate()
            clean_dead_runs()
    assert launcher.returncode == 0, out + err + host_b.output


def test_remote_output_lines_reach_the_launchers_output_and_logs(
        pinflow: Callable[..., Run], daemon: Callable, tmp_path: Path) -> None:
    (tmp_path / "greeter.py").write_text(
        "from pinflow import Node\n"
        "node = Node()\n"
        "print('hello from', node.id, flush=True)\n"
        "for event in node:\n"
        "    if event['type'] == 'INPUT':\n"
        "        print('tick on b', flush=True)\n"
        "        break\n")
    flow = tmp_path / "greeter.yml"
    flow.write_text("nodes:\n  - id: greeter\n    path: greeter.py\n    machine: b\n"
                    "    inputs:\n      tick: pinflow/timer/hz/5\n")
    _host_b, endpoint = daemon("b")
    run = pinflow("run", str(flow), "--connect", endpoint, timeout=60)
    assert run.returncode == 0, run.output
    assert "greeter | hello from greeter" in run.stdout
    assert "greeter | tick on b" in run.stdout
    (log,) = (tmp_path / "logs").glob("*/greeter.log")
    assert log.read_text() == "hello from greeter\ntick on b\n"


def _stream_of(endpoint: str, node: str, output: str, host: str) -> tuple[str, tuple[str, int]]:
    """The run id and address of the direct stream ``host`` takes for ``node/output``, read
    from its token on the wire (as a producer's gateway finds it)."""
    wire = open_wire(listen=[], connect=[endpoint])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for reply in wire.liveliness().get(f"{WIRE_ROOT}/*/stream/{node}/{output}/{host}/*"):
                key = str(reply.ok.key_expr).split("/")
                address = streams.parse_address_part(key[-1])
                if address is not None:
                    return key[2], address
            time.sleep(0.2)
    finally:
        wire.close()
    pytest.fail(f"host {host} took no stream of {node}/{output}")


def test_a_stream_cut_in_the_middle_of_a_message_loses_that_message_only(
        daemon: Callable, tmp_path: Path) -> None:
    """On b's stream of producer/frames, beside the real one: a connection that is no
    stream (refused), and one that cuts a message short (dropped and counted, its slot back
    in the pool). Every real frame still arrives intact and in order."""
    host_b, endpoint = daemon("b")
    launcher = start_launcher("stream_cut.yml", endpoint, tmp_path, "--stop-after", "8")
    try:
        run_id, address = _stream_of(endpoint, "producer", "frames", "m-b")
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(streams.PREFIX.pack(5, 0) + b"hello")
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(streams.hello(run_id, "producer", "frames"))
            layout = codec.encode(np.zeros((512, 512, 4), np.uint8)).layout
            header = messages.Header.new("inline", 10**6, time.time_ns(), layout=layout)
            sock.sendall(streams.frame_head(header, 1 << 20) + bytes(1 << 19))
        out, _ = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    assert launcher.returncode == 0, out + host_b.output
    seen = json.loads((tmp_path / "results" / "consumer_b.json").read_text())
    assert seen["indices"] == list(range(len(seen["indices"]))) and len(seen["indices"]) > 50
    assert seen["torn"] == seen["not_zero_copy"] == seen["wrong_type"] == 0
    assert "stream hello is not JSON" in host_b.output
    assert "the stream of producer/frames ended in the middle of a message" in host_b.output
    received = len(seen["indices"])
    assert (f"wire: imported producer/frames: {received} received and republished on this "
            f"host ({received} from a direct stream), 1 dropped") in host_b.output


def test_killing_the_host_a_stream_goes_to_leaves_the_producer_s_host_running(
        daemon: Callable, tmp_path: Path) -> None:
    """b takes producer/frames on a direct stream; SIGKILL b's daemon mid-stream: the
    launcher's gateway sees the stream break (no traceback, no stuck producer), the run
    goes on to its end and fails naming the lost machine."""
    host_b, endpoint = daemon("b")
    results = tmp_path / "results"
    launcher = start_launcher("stream_cut.yml", endpoint, tmp_path, "--stop-after", "12")
    try:
        wait_for_frames(results, "consumer_b", 10, launcher)
        host_b.process.kill()
        out, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
        clean_dead_runs()  # the killed daemon's pools
    assert launcher.returncode == 1, out + err
    assert "machine 'b' was lost" in err and "Traceback" not in out + err, out + err
    exported = re.search(r"wire: exported producer/frames: (\d+) sent once to the wire "
                         r"\((\d+) on direct streams\)", out)
    assert exported and int(exported.group(2)) >= 10, out
