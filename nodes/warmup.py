"""One-time costs a node pays before ``Node()``, so that they delay the start, not the frames.

The launcher starts a dataflow only once every node is ready (its ``Node()`` returned), so a
cost paid before ``Node()`` lands in start-up. Paid on a node's first message instead, it
holds that message and everything queued behind it.
"""

from __future__ import annotations

import pyarrow as pa


def warm_up_arrow() -> None:
    """Make pyarrow's first conversion now: on it, pyarrow imports pandas when pandas is
    installed (0.2-0.5 s measured). On the first latency record of the 1080p dataflow's GPU
    consumer that stalled it for 0.38-0.47 s, and the camera dropped frames meanwhile."""
    pa.array([0])
