"""``pinflow doctor``: what this machine offers the pinned path, and which path it takes.

Probing CUDA here is on purpose (the user asked); nothing else in pinflow does it eagerly.
The GPU path runs on torch's own CUDA runtime, so what matters is whether torch sees a GPU
and whether its driver registers host memory; when torch sees a GPU but pinflow's path still
cannot use it, the report says why and what to change.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from pinflow.spec.units import mib
from pinflow.transport import budget, gpu_runtime, gpu_select, segment, torch_cuda


@dataclass(frozen=True)
class TorchFacts:
    version: str | None
    """None: torch is not installed."""
    cuda_build: str | None
    """The CUDA version torch was built for; None for a CPU-only build."""
    sees_gpu: bool
    devices: int
    device_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    python: str
    platform: str
    nvidia_driver: str | None
    torch: str | None
    torch_cuda_build: str | None
    torch_sees_gpu: bool
    cuda_devices: int
    device_names: list[str]
    gpu_runtime: str
    """Which runtime pinflow's GPU path uses here (torch's, or the CPU stand-in)."""
    gpu_unavailable_reason: str | None
    host_register: list[dict[str, Any]]
    """Per device: can the driver register read-only / read-write shared-memory mappings."""
    cuda_python: str | None
    """Installed cuda-python, if any: informational, pinflow's GPU path does not use it."""
    memlock_limit: int | None
    """RLIMIT_MEMLOCK soft limit in bytes (None = unlimited); only mlock is bound by it."""
    shm_total: int
    shm_free: int
    pinned_budget: int
    pinned_in_use: int
    pinned_path: str
    """What a ``pinned=True`` output and a ``device: cuda`` consumer do on this machine."""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_facts() -> TorchFacts:
    try:
        import torch
    except ModuleNotFoundError:
        return TorchFacts(None, None, False, 0)
    sees = bool(torch.version.cuda) and bool(torch.cuda.is_available())
    count = torch.cuda.device_count() if sees else 0
    names = [torch.cuda.get_device_name(i) for i in range(count)]
    return TorchFacts(torch.__version__, torch.version.cuda, sees, count, names)


def register_support(runtime: Any, devices: int) -> list[dict[str, Any]]:
    """Ask the driver, on pinflow's registration thread, what each device registers."""
    from pinflow.transport.registrar import Registrar

    found = []
    for device in range(devices):
        registrar = Registrar(runtime, device)
        support = registrar.support
        registrar.close()
        found.append({"device": device, "read_only": support.read_only,
                      "read_write": support.read_write, "detail": support.detail})
    return found


def pinned_path(torch: TorchFacts, probe: gpu_runtime.Probe, runtime_name: str,
                support: list[dict[str, Any]], driver: str | None) -> str:
    """One sentence: what a pinned pool and a ``device: cuda`` input do here, and the fix when
    the GPU path is out of reach although a GPU is there."""
    if runtime_name == "stand-in":
        gpus = f" although torch sees {torch.devices} GPU(s)" if torch.sees_gpu else ""
        return (f"CPU stand-in: {gpu_runtime.RUNTIME_ENV} selects the simulated GPU of "
                f"pinflow.testing{gpus}; unset {gpu_runtime.RUNTIME_ENV} to use a real GPU")
    if not probe.available:
        hint = ""
        if torch.sees_gpu:
            hint = (f" (torch sees {torch.devices} GPU(s): {gpu_runtime.RUNTIME_ENV} must be "
                    f"unset or 'torch')")
        return (f"CPU fallback: pinned pools are prefaulted shared memory (zero-copy for CPU "
                f"consumers); `device: cuda` inputs get CPU data with one warning, because "
                f"{probe.reason}{hint}")
    if not any(s["read_only"] or s["read_write"] for s in support):
        detail = support[0]["detail"] if support else "unknown"
        return (f"pageable copies: torch sees the GPU but its driver refuses to register host "
                f"memory ({detail}), so frames are staged by the driver (correct, slower, "
                f"counted); run on a host whose driver supports cudaHostRegister (not WSL2 "
                f"with a small pinned limit, not a Jetson Nano)")
    modes = ", ".join(f"cuda:{s['device']} " + ("read-only" if s["read_only"] else "read-write")
                      for s in support)
    return (f"DMA through torch's CUDA runtime: each pinned segment is registered once "
            f"(Portable, on a background thread) and frames are copied straight from their "
            f"slot on a pooled stream; consumers map segments {modes}")


def examine() -> Report:
    torch = torch_facts()
    selection = gpu_select.select()
    found = selection.probe
    runtime_name = selection.runtime.name if selection.runtime is not None else "torch"
    support = (register_support(selection.runtime, found.device_count)
               if selection.runtime is not None else [])
    driver = torch_cuda.nvidia_driver_version()
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    memlock = None if soft == resource.RLIM_INFINITY else soft
    shm = shutil.disk_usage(segment.shm_dir())
    return Report(
        python=platform.python_version(), platform=platform.platform(),
        nvidia_driver=driver, torch=torch.version, torch_cuda_build=torch.cuda_build,
        torch_sees_gpu=torch.sees_gpu, cuda_devices=found.device_count,
        device_names=torch.device_names, gpu_runtime=found.runtime or runtime_name,
        gpu_unavailable_reason=found.reason, host_register=support,
        cuda_python=_version("cuda-python") or _version("cuda-bindings"),
        memlock_limit=memlock, shm_total=shm.total, shm_free=shm.free,
        pinned_budget=budget.budget_bytes(),
        pinned_in_use=sum(budget.pinned_segments().values()),
        pinned_path=pinned_path(torch, found, runtime_name, support, driver),
    )


def _mib(value: int | None) -> str:
    return "unlimited" if value is None else mib(value)


def render(report: Report) -> str:
    registration = "; ".join(
        f"cuda:{s['device']} read-only {'yes' if s['read_only'] else 'no'}, read-write "
        f"{'yes' if s['read_write'] else 'no'}" for s in report.host_register) or "-"
    torch_line = ("not installed (pip install 'pinflow[torch]')" if report.torch is None else
                  f"{report.torch} (CUDA build: {report.torch_cuda_build or 'none, CPU-only'}; "
                  f"sees a GPU: {'yes' if report.torch_sees_gpu else 'no'})")
    rows: list[tuple[str, Any]] = [
        ("python", f"{report.python} on {report.platform}"),
        ("NVIDIA driver", report.nvidia_driver or "not loaded"),
        ("torch", torch_line),
        ("CUDA devices", ", ".join(report.device_names) or report.cuda_devices),
        ("GPU runtime", report.gpu_runtime),
        ("GPU path unavailable because", report.gpu_unavailable_reason or "-"),
        ("host registration", registration),
        ("cuda-python", f"{report.cuda_python} (not used by pinflow)" if report.cuda_python
         else "not installed (not needed)"),
        ("memlock limit (mlock only)", _mib(report.memlock_limit)),
        ("/dev/shm", f"{_mib(report.shm_free)} free of {_mib(report.shm_total)}"),
        ("pinned budget", f"{_mib(report.pinned_in_use)} in use of {_mib(report.pinned_budget)} "
                          f"(set with {budget.BUDGET_ENV} or `pinned_budget:`)"),
        ("pinned=True here", report.pinned_path),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def as_dict(report: Report) -> dict[str, Any]:
    return asdict(report)


def gpu_check(*, standin: bool) -> int:
    """``pinflow doctor --gpu-check``: see :mod:`pinflow.tools.gpu_check`."""
    from pinflow.tools import gpu_check as check

    if not standin and os.environ.get(gpu_runtime.RUNTIME_ENV, "torch") not in ("", "torch"):
        print(f"note: {gpu_runtime.RUNTIME_ENV} is ignored by --gpu-check (it tests torch's "
              f"runtime; add --standin for the stand-in)", flush=True)
    return check.run(standin=standin)
