"""``pinflow doctor --gpu-check``: prove the GPU path on this machine with one command.

Runs pinflow's real pipeline in one process (producer pool -> zenoh -> receiver -> device
copier) on the GPU through torch's runtime, or on the CPU stand-in with ``--standin`` (same
checks, smaller frames, and figures that are not GPU figures). One line per check; exit 0
only if every check holds. Well under five minutes on a GPU.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.errors import CudaUnavailable
from pinflow.transport import gpu_select, segment
from pinflow.transport.gpu_runtime import HOST_REGISTER_PORTABLE, GpuRuntime

GPU_FRAME = (1080, 1920, 4)
STANDIN_FRAME = (64, 256, 4)


@dataclass
class Check:
    name: str
    ok: bool
    figure: str


@dataclass(frozen=True)
class Plan:
    """How hard each check pushes: full-size frames on a GPU, small ones on the stand-in."""

    frame: tuple[int, ...]
    load_frames: int
    latency_frames: int
    bandwidth_rounds: int
    lag_s: float
    """A slow kernel queued on the consumer stream every tenth frame, so it lags behind."""


GPU_PLAN = Plan(GPU_FRAME, 300, 100, 100, 0.005)
STANDIN_PLAN = Plan(STANDIN_FRAME, 150, 40, 20, 0.003)


def frame(i: int, shape: tuple[int, ...]) -> np.ndarray:
    """Frame ``i``: every byte i % 251, the first 8 bytes i, so frames differ everywhere."""
    out = np.full(shape, i % 251, dtype=np.uint8)
    out.reshape(-1)[:8] = np.frombuffer(np.int64(i).tobytes(), np.uint8)
    return out


def checksum(host: np.ndarray) -> int:
    return int(host.reshape(-1).view(np.int32).sum(dtype=np.int64))


class TorchKernels:
    """The consumer's device work on a real GPU: torch kernels on a stream of its own."""

    label = "GPU"

    def __init__(self, device: int) -> None:
        import torch

        self.torch, self.device = torch, device
        self.stream = torch.cuda.Stream(device=device)
        self._cycles_per_s = self._calibrate()

    def _calibrate(self) -> float:
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(self.stream):
            start.record()
            torch.cuda._sleep(10_000_000)
            end.record()
        end.synchronize()
        return 10_000_000 / max(start.elapsed_time(end) / 1000, 1e-6)

    def using(self) -> Any:
        return self.torch.cuda.stream(self.stream)

    def results(self, count: int) -> Any:
        with self.using():
            return self.torch.zeros(count, dtype=self.torch.int64, device=self.device)

    def checksum_into(self, tensor: Any, results: Any, slot: int) -> None:
        torch = self.torch
        results[slot] = tensor.reshape(-1).view(torch.int32).sum(dtype=torch.int64)

    def sleep(self, seconds: float) -> None:
        self.torch.cuda._sleep(int(seconds * self._cycles_per_s))

    def read(self, results: Any) -> np.ndarray:
        with self.using():
            return results.cpu().numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def memory_in_use(self) -> int:
        return int(self.torch.cuda.memory_allocated(self.device))


class StandinKernels:
    """The same consumer work as stand-in kernels (Python functions on a stand-in stream)."""

    label = "stand-in"

    def __init__(self, runtime: Any, device: int) -> None:
        self.runtime, self.device = runtime, device
        self.stream = runtime.new_stream(device, label="self-test")

    def using(self) -> Any:
        return self.runtime.use_stream(self.stream)

    def results(self, count: int) -> np.ndarray:
        return np.zeros(count, dtype=np.int64)

    def checksum_into(self, tensor: Any, results: np.ndarray, slot: int) -> None:
        def kernel(array: np.ndarray) -> None:
            results[slot] = checksum(array)
        self.runtime.launch(self.stream, kernel, tensor)

    def sleep(self, seconds: float) -> None:
        self.runtime.launch(self.stream, lambda: None, delay_s=seconds)

    def read(self, results: np.ndarray) -> np.ndarray:
        self.stream.synchronize()
        return results.copy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def memory_in_use(self) -> int:
        return int(self.runtime.allocator.live)


@contextlib.contextmanager
def _private_shm() -> Iterator[Path]:
    """A shared-memory folder of the self-test's own, so it sees (and leaves) only its files."""
    folder = Path(tempfile.mkdtemp(prefix="pinflow-gpu-check-",
                                   dir=segment.DEFAULT_SHM_DIR if segment.DEFAULT_SHM_DIR.is_dir()
                                   else None))
    before = os.environ.get(segment.SHM_DIR_ENV)
    os.environ[segment.SHM_DIR_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(segment.SHM_DIR_ENV, None)
        else:
            os.environ[segment.SHM_DIR_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


class SelfTest:
    """Every check, against one runtime; :meth:`run` yields one :class:`Check` at a time."""

    def __init__(self, runtime: GpuRuntime, kernels: Any, plan: Plan, device: int = 0) -> None:
        self.runtime, self.kernels, self.plan, self.device = runtime, kernels, plan, device
        self.frame = plan.frame
        self.nbytes = int(np.prod(plan.frame))
        self._headers: dict[str, np.ndarray] = {}
        """A byte of each segment's header page (not a slot: holding it holds no slot), to ask
        the driver about the segment after pinflow let go of it."""

    def run(self, workdir: Path) -> Iterator[Check]:
        from pinflow.testing.rig import make_rig

        baseline = self.kernels.memory_in_use()
        with make_rig(workdir, self.runtime, device=self.device, slots=4,
                      consumer_queue_sizes=(4,)) as rig:
            yield self._support(rig)
            yield self._registration(rig)
            yield self._contents_under_load(rig)
            yield self._no_reuse_hazard(rig)
            yield self._replaced_pool(rig)
            yield self._latency(rig)
            yield self._leaks(rig, baseline)
        self._headers.clear()
        yield self._one_copier_per_device()
        yield self._blocking_waits()
        yield self._bandwidth()

    def _larger(self, factor: float) -> tuple[int, ...]:
        """A frame shape that makes the producer regrow its pool (it grows 1.25x at most)."""
        return (int(self.frame[0] * factor), *self.frame[1:])

    # -- the checks ---------------------------------------------------------------------------
    def _support(self, rig: Any) -> Check:
        support = rig.copier.support
        ok = support.read_only or support.read_write
        mapping = "read-write" if rig.receiver.writable_mappings else "read-only"
        return Check("host registration", ok,
                     f"read-only {'yes' if support.read_only else 'no'}, read-write "
                     f"{'yes' if support.read_write else 'no'}; consumers map {mapping}"
                     + (f" ({support.detail})" if support.detail else ""))

    def _deliver(self, rig: Any, i: int, shape: tuple[int, ...] | None = None) -> Any:
        rig.send(frame(i, shape or self.frame))
        view, mapping, layout = rig.receive()
        if mapping.segment.name not in self._headers:
            self._headers[mapping.segment.name] = mapping.segment.view(0, 1, writable=False)
        return rig.copy(view, mapping, layout)

    def _registration(self, rig: Any) -> Check:
        for i in range(20):
            self._deliver(rig, i)
        first = next(iter(self._headers.values()))
        for i in range(20, 40):
            self._deliver(rig, i, self._larger(1.1))  # the producer regrows its pool
        stats = rig.copier.stats
        live = [m.segment for m in rig.receiver.mappings()]
        live_seen = bool(live) and all(
            self.runtime.is_registered(s.view(0, s.size, writable=False)) for s in live)
        old_gone = not self.runtime.is_registered(first)
        ok = (stats.registrations == 2 and stats.copies == 40 and stats.pageable_copies == 0
              and live_seen and old_gone and rig.receiver.segments_mapped == 2)
        return Check("registration once per segment", ok,
                     f"{rig.receiver.segments_mapped} segments, {stats.registrations} "
                     f"registrations for {stats.copies} pinned copies; the driver sees the live "
                     f"segment registered: {'yes' if live_seen else 'NO'}, the replaced one "
                     f"unregistered: {'yes' if old_gone else 'NO'}")

    def _contents_under_load(self, rig: Any) -> Check:
        count = self.plan.load_frames
        results = self.kernels.results(count)
        expected = [checksum(frame(i, self.frame)) for i in range(count)]
        with self.kernels.using():
            for i in range(count):
                tensor = self._deliver(rig, i)
                if i % 10 == 0:
                    self.kernels.sleep(self.plan.lag_s)
                self.kernels.checksum_into(tensor, results, i)
                del tensor  # let go at once: the allocator may hand its memory out again
        got = self.kernels.read(results)
        bad = [i for i in range(count) if int(got[i]) != expected[i]]
        return Check("device contents under load, no per-frame sync", not bad,
                     f"{count - len(bad)}/{count} frames intact"
                     + (f", first bad frame {bad[0]}" if bad else ""))

    def _no_reuse_hazard(self, rig: Any) -> Check:
        results = self.kernels.results(8)
        read = self.runtime.new_event()
        with self.kernels.using():
            first = self._deliver(rig, 1000)
            address = first.data_ptr()
            self.kernels.sleep(0.3)  # the consumer is busy ...
            self.kernels.checksum_into(first, results, 0)  # ... before it reads frame 1000
            self.runtime.record_event(read, self.kernels.stream)
            del first
            early = 0
            for k in range(1, 8):
                tensor = self._deliver(rig, 1000 + k)
                early += tensor.data_ptr() == address and not read.query()
                self.kernels.checksum_into(tensor, results, k)
                del tensor
        got = self.kernels.read(results)
        intact = all(int(got[k]) == checksum(frame(1000 + k, self.frame)) for k in range(8))
        return Check("no reuse of freed device memory while still read", intact and not early,
                     f"frames intact: {'yes' if intact else 'NO'}; its block handed out again "
                     f"before the consumer read it: {'YES' if early else 'no'}")

    def _replaced_pool(self, rig: Any) -> Check:
        before = rig.copier.stats.forgotten_copies
        queued = []
        shapes = [self.frame] * 3 + [self._larger(2)]
        for k, shape in enumerate(shapes):
            rig.send(frame(2000 + k, shape))
            queued.append(rig.receive())  # the fourth maps a new pool, forgets the old one
        results = self.kernels.results(4)
        with self.kernels.using():  # the tensors are ordered on the stream that reads them
            try:
                tensors = [rig.copy(view, mapping, layout) for view, mapping, layout in queued]
            except Exception as exc:
                return Check("frames queued from a replaced pool", False, f"raised {exc!r}")
            del queued
            for k, tensor in enumerate(tensors):
                self.kernels.checksum_into(tensor, results, k)
            del tensors
        got = self.kernels.read(results)
        intact = all(int(got[k]) == checksum(frame(2000 + k, shapes[k])) for k in range(4))
        forgotten = rig.copier.stats.forgotten_copies - before
        return Check("frames queued from a replaced pool", intact and forgotten == 3,
                     f"4/4 delivered {'intact' if intact else 'CORRUPT'}, {forgotten} copied as "
                     f"pageable from the replaced pool")

    def _latency(self, rig: Any) -> Check:
        samples = []
        with self.kernels.using():
            for i in range(self.plan.latency_frames):
                start = time.perf_counter()
                tensor = self._deliver(rig, 3000 + i)
                self.kernels.synchronize()  # measuring: usable on the consumer stream
                samples.append((time.perf_counter() - start) * 1000)
                del tensor
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return Check("device-delivery latency", True,
                     f"p50 {statistics.median(samples):.2f} ms, p99 {p99:.2f} ms per "
                     f"{self.nbytes:,}-byte frame (send -> usable on the consumer stream)"
                     + self._not_gpu())

    def _leaks(self, rig: Any, baseline: int) -> Check:
        self.kernels.synchronize()
        deadline = time.monotonic() + 5.0
        rig.channel.settle()  # releases come back on the link; the producer reads them
        while time.monotonic() < deadline and (
                rig.copier.stats.in_flight
                or sum(pool.stats().in_use for pool in rig.channel.pools())):
            time.sleep(0.01)
            rig.channel.settle()
        held = sum(pool.stats().in_use for pool in rig.channel.pools())
        rig.receiver.close()  # the node stops: every segment is forgotten, i.e. unregistered
        stats = rig.copier.stats
        problems = []
        if stats.registrations != stats.unregistrations or stats.unregistration_failures:
            problems.append(f"{stats.registrations} registrations but "
                            f"{stats.unregistrations} unregistrations")
        still = [n for n, header in self._headers.items() if self.runtime.is_registered(header)]
        if still:
            problems.append(f"the driver still has registered: {still}")
        if stats.in_flight:
            problems.append(f"{stats.in_flight} copies in flight")
        if held:
            problems.append(f"{held} slots still held")
        in_use = self.kernels.memory_in_use()
        if in_use != baseline:
            problems.append(f"device memory in use {in_use} B, {baseline} B before")
        return Check("nothing leaked", not problems,
                     "; ".join(problems) or f"{stats.registrations} registrations, as many "
                     f"unregistrations over {len(self._headers)} segments, every slot released, "
                     f"device memory back to {baseline} B")

    def _one_copier_per_device(self) -> Check:
        from pinflow.nodes.devices import Devices

        devices = Devices("gpu-check", [], lambda _text: None)
        try:
            shared = devices.delivery("cuda") is devices.delivery("cuda:0")
        finally:
            devices.close()
        return Check("`cuda` and `cuda:0` share one copier", shared,
                     "one registration per segment for both spellings" if shared
                     else "two copiers: the second registration would fail (712)")

    def _blocking_waits(self) -> Check:
        with self.kernels.using():
            self.kernels.sleep(0.5)
        event = self.runtime.new_event()  # the kind of event pinflow's copies use
        self.runtime.record_event(event, self.kernels.stream)
        cpu, wall = time.thread_time(), time.perf_counter()
        self.runtime.synchronize_event(event)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        share = cpu / wall if wall > 0 else 0.0
        return Check("copy events wait without spinning", share < 0.2,
                     f"{cpu * 1000:.0f} ms CPU while waiting {wall * 1000:.0f} ms on an event")

    def _bandwidth(self) -> Check:
        try:
            pinned, pageable = measure_h2d(self.runtime, self.device, self.nbytes,
                                           self.plan.bandwidth_rounds)
        except Exception as exc:
            return Check("H2D bandwidth", False, f"could not measure: {exc}")
        ms = self.nbytes / (pinned * 1e9) * 1000
        return Check("H2D bandwidth", pinned > 0 and pageable > 0,
                     f"pinned {pinned:.1f} GB/s ({ms:.3f} ms per frame), pageable "
                     f"{pageable:.1f} GB/s, ratio {pinned / pageable:.2f}x" + self._not_gpu())

    def _not_gpu(self) -> str:
        return "" if self.kernels.label == "GPU" else " [stand-in: CPU figures, not a GPU's]"


def measure_h2d(runtime: GpuRuntime, device: int, nbytes: int, rounds: int
                ) -> tuple[float, float]:
    """GB/s of host-to-device copies from a registered shared-memory mapping and from
    pageable memory, through ``runtime`` (registration on pinflow's registration thread)."""
    from pinflow.transport.registrar import Registrar

    fd = os.memfd_create("pinflow-h2d", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, nbytes)
        mm = mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)
    host = np.frombuffer(mm, dtype=np.uint8)
    host[:] = 1
    pageable_host = np.ones(nbytes, dtype=np.uint8)
    stream = runtime.copy_stream(device)
    target = runtime.empty((nbytes,), np.dtype(np.uint8), device, stream)
    event = runtime.new_event()
    address = int(host.__array_interface__["data"][0])
    registrar = Registrar(runtime, device)
    try:
        registrar.call(lambda: runtime.host_register(address, nbytes, HOST_REGISTER_PORTABLE))
        if not runtime.is_registered(host):
            raise RuntimeError("the driver does not see the registered source as pinned: "
                               "the 'pinned' figure would be a pageable one")

        def gbps(source: np.ndarray) -> float:
            runtime.copy_from_host(target, source, stream)  # warm-up
            runtime.record_event(event, stream)
            runtime.synchronize_event(event)
            start = time.perf_counter()
            for _ in range(rounds):
                runtime.copy_from_host(target, source, stream)
            runtime.record_event(event, stream)
            runtime.synchronize_event(event)
            return rounds * nbytes / (time.perf_counter() - start) / 1e9

        pinned = gbps(host)
        pageable = gbps(pageable_host)
        registrar.call(lambda: runtime.host_unregister(address))
    finally:
        registrar.close()
        del host
        mm.close()
    return pinned, pageable


def run(*, standin: bool, say: Callable[[str], None] = print) -> int:
    """The self-test; returns the exit status (0: every check held)."""
    if standin:
        from pinflow.testing import StandinCuda

        runtime: Any = StandinCuda(copy_delay_s=0.0002)
        kernels: Any = StandinKernels(runtime, 0)
        plan = STANDIN_PLAN
        say("GPU self-test on the CPU stand-in (pinflow.testing): the same checks as on a "
            "GPU; its figures are CPU figures, not a GPU's")
    else:
        from pinflow.transport import torch_cuda

        found = torch_cuda.probe()
        if not found.available:
            raise CudaUnavailable(f"no GPU for the self-test: {found.reason} (`pinflow doctor "
                                  f"--gpu-check --standin` runs the same checks on the CPU)")
        runtime = torch_cuda.TorchRuntime()
        import torch

        kernels = TorchKernels(0)
        plan = GPU_PLAN
        say(f"GPU self-test on cuda:0 ({torch.cuda.get_device_name(0)}), {found.runtime}, "
            f"NVIDIA driver {torch_cuda.nvidia_driver_version() or 'unknown'}")
    failed = 0
    gpu_select.use(runtime)
    try:
        with _private_shm() as shm, tempfile.TemporaryDirectory(prefix="pinflow-gpu-") as tmp:
            for check in SelfTest(runtime, kernels, plan).run(Path(tmp)):
                failed += not check.ok
                say(f"{'PASS' if check.ok else 'FAIL'}  {check.name}: {check.figure}")
            left = sorted(p.name for p in shm.iterdir())
            failed += bool(left)
            say(f"{'FAIL' if left else 'PASS'}  nothing left in shared memory: "
                + (", ".join(left) if left else f"{shm} empty"))
    finally:
        gpu_select.use(None)
        if standin:
            runtime.close()
    if standin and runtime.violations:
        failed += 1
        say(f"FAIL  CUDA rules kept: {'; '.join(runtime.violations)}")
    elif standin:
        say("PASS  CUDA rules kept: the stand-in saw no broken rule")
    say("all checks passed" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1
