"""``pinflow doctor``: what this machine offers the pinned path, and which path it takes.

Probing CUDA here is on purpose (the user asked); nothing else in pinflow does it eagerly.
"""

from __future__ import annotations

import importlib.metadata
import platform
import resource
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from pinflow.transport import budget, cuda, segment


@dataclass(frozen=True)
class Report:
    python: str
    platform: str
    cuda_python: str | None
    cuda_runtime_version: int | None
    cuda_driver_version: int | None
    cuda_devices: int
    host_register_supported: list[bool]
    cuda_unavailable_reason: str | None
    torch: str | None
    torch_cuda: bool | None
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


def _torch() -> tuple[str | None, bool | None]:
    try:
        import torch
    except ModuleNotFoundError:
        return None, None
    return torch.__version__, bool(torch.cuda.is_available())


def examine() -> Report:
    found = cuda.probe()
    torch_version, torch_cuda = _torch()
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    memlock = None if soft == resource.RLIM_INFINITY else soft
    shm = shutil.disk_usage(segment.shm_dir())
    if not found.available:
        path = (f"CPU fallback: pinned pools are prefaulted shared memory (zero-copy for CPU "
                f"consumers); `device: cuda` inputs get CPU data with one warning, because "
                f"{found.reason}")
    elif not any(found.host_register_supported):
        path = ("pageable copies: the device does not support cudaHostRegister, so copies "
                "from pinned pools are staged by the driver")
    elif torch_cuda is not True:
        path = ("DMA needs torch with CUDA for device tensors: "
                + ("pip install 'pinflow[torch]'" if torch_version is None
                   else f"torch {torch_version} has no CUDA support"))
    else:
        path = ("DMA: each pinned segment is registered once with cudaHostRegister; frames "
                "are copied with cudaMemcpyAsync straight from their slot")
    return Report(
        python=platform.python_version(), platform=platform.platform(),
        cuda_python=_version("cuda-python") or _version("cuda-bindings"),
        cuda_runtime_version=found.runtime_version, cuda_driver_version=found.driver_version,
        cuda_devices=found.device_count, host_register_supported=found.host_register_supported,
        cuda_unavailable_reason=found.reason, torch=torch_version, torch_cuda=torch_cuda,
        memlock_limit=memlock, shm_total=shm.total, shm_free=shm.free,
        pinned_budget=budget.budget_bytes(), pinned_in_use=sum(budget.pinned_segments().values()),
        pinned_path=path,
    )


def _mib(value: int | None) -> str:
    return "unlimited" if value is None else f"{value / (1 << 20):,.1f} MiB"


def render(report: Report) -> str:
    rows: list[tuple[str, Any]] = [
        ("python", f"{report.python} on {report.platform}"),
        ("cuda-python", report.cuda_python or "not installed (pip install cuda-python)"),
        ("CUDA runtime / driver", f"{report.cuda_runtime_version} / {report.cuda_driver_version}"),
        ("CUDA devices", report.cuda_devices),
        ("host register supported", report.host_register_supported or "-"),
        ("CUDA unavailable because", report.cuda_unavailable_reason or "-"),
        ("torch", f"{report.torch} (cuda: {report.torch_cuda})" if report.torch
         else "not installed (pip install 'pinflow[torch]')"),
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
