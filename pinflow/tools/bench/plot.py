"""``pinflow bench --plot PATH``: the latency CDF of every arm, as a PNG (matplotlib, an
optional extra: ``pip install 'pinflow[plot]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pinflow.errors import PinflowError

MISSING = "--plot needs matplotlib: pip install 'pinflow[plot]'"


def require() -> None:
    """Raise before anything is measured, not after minutes of it, if plotting cannot work."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        raise PinflowError(MISSING) from None


def plot(report: dict[str, Any], path: Path) -> None:
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in report["arms"]:
        values = sorted(arm["latencies_ms"])
        if values:
            ax.plot(values, np.linspace(0, 1, len(values)), label=arm["label"])
    ax.set_xscale("log")
    ax.set_xlabel("latency, frame captured -> usable (ms, log scale)")
    ax.set_ylabel("fraction of frames")
    ax.set_title(f"1080p RGBA @ 30 Hz on {report['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
