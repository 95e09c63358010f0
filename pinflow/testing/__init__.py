"""Test pinflow's GPU path, and your own GPU nodes' ordering, without a GPU.

:class:`StandinCuda` is a CUDA device simulated on the CPU with CUDA's ordering rules
(asynchronous streams, events, stream waits, a registration table, a caching allocator that
reuses freed memory at once). pinflow's device delivery runs on it unchanged, and it records
every broken rule in ``violations``::

    from pinflow.testing import StandinCuda, use_standin

    with use_standin(StandinCuda(copy_delay_s=0.002)) as gpu:   # in this process
        ...                                                      # device delivery runs here
        gpu.check()                                              # no rule broken

For a dataflow run (node processes), set ``PINFLOW_GPU_RUNTIME=standin`` (options:
``standin:devices=2,copy_delay_ms=1,register_delay_ms=5,read_only=0,register=0``); inside a
node, :func:`active` returns that process's stand-in. Device buffers are
:class:`StandinTensor` objects, not torch tensors: queue your consumer's work on them with
:meth:`StandinCuda.launch`, read them with ``tensor.cpu()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pinflow.transport.cuda_standin import (
    Handle,
    StandinCuda,
    StandinEvent,
    StandinStream,
    StandinTensor,
)

__all__ = [
    "Handle",
    "StandinCuda",
    "StandinEvent",
    "StandinStream",
    "StandinTensor",
    "active",
    "use_standin",
]


@contextlib.contextmanager
def use_standin(runtime: StandinCuda | None = None) -> Iterator[StandinCuda]:
    """Make ``runtime`` (default: a new one-device stand-in) this process's GPU runtime for
    the block; device deliveries created inside use it."""
    from pinflow.transport import gpu_select

    runtime = runtime if runtime is not None else StandinCuda()
    gpu_select.use(runtime)
    try:
        yield runtime
    finally:
        gpu_select.use(None)


def active() -> StandinCuda | None:
    """This process's stand-in, when it is the selected GPU runtime (e.g. in a node run with
    ``PINFLOW_GPU_RUNTIME=standin``)."""
    from pinflow.transport import gpu_select

    runtime = gpu_select.select().runtime
    return runtime if isinstance(runtime, StandinCuda) else None
