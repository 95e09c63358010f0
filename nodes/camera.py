"""Built-in node: a camera stand-in that sends RGBA frames, one per tick of its input.

Frames are written straight into loaned shared-memory slots (pinned by default), so the
only per-frame copy is the render itself; GPU consumers then DMA from the slot. The test
pattern (see :mod:`pinflow.nodes.framing`) lets consumers check integrity and a detector
find something; ``--replay`` sends recorded frames instead. A full pool under
``on_full: drop`` drops the frame (a live camera cannot wait), counted and reported.

    pinflow YAML:  module: pinflow.nodes.camera   inputs: {tick: pinflow/timer/hz/30}
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.nodes import framing


class Replay:
    """Recorded (N, H, W, 4) uint8 frames, memory-mapped so long recordings cost no RAM."""

    def __init__(self, path: Path, height: int, width: int) -> None:
        if path.suffix == ".npy":
            frames = np.load(path, mmap_mode="r")
            if frames.ndim == 3:
                frames = frames[None]
        elif path.suffix == ".rgba":
            raw = np.memmap(path, dtype=np.uint8, mode="r")
            frame_bytes = height * width * 4
            if raw.size == 0 or raw.size % frame_bytes:
                raise ValueError(f"{path}: {raw.size} bytes is not a whole number of "
                                 f"{width}x{height} RGBA frames; check --width/--height")
            frames = raw.reshape(-1, height, width, 4)
        else:
            raise ValueError(f"{path}: replay reads .npy or raw .rgba files")
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 4 or not len(
                frames):
            raise ValueError(f"{path}: expected (N, H, W, 4) uint8 frames, got "
                             f"{frames.dtype} {frames.shape}")
        self.frames = frames

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape[1:])  # type: ignore[return-value]

    def render(self, index: int, out: np.ndarray) -> int:
        """Copy recorded frame ``index`` (looping) into ``out``; returns its checksum."""
        np.copyto(out, self.frames[index % len(self.frames)])
        return framing.checksum(out)


class Pattern:
    """The moving-square test pattern, stamped so consumers can verify each frame."""

    def __init__(self, height: int, width: int) -> None:
        self.background = framing.make_background(height, width)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.background.shape  # type: ignore[return-value]

    def render(self, index: int, out: np.ndarray) -> int:
        framing.render(index, out, self.background)
        return framing.read_stamp(out)[1]


class _WarmUp(Exception):
    """Raised inside a loan to hand the slot back unsent."""


def warm_up(node: Any, output: str, shape: tuple[int, int, int], pinned: bool) -> None:
    """Create the output's pool now: the first loan maps (and tries to pin) the whole
    segment, which takes ~0.2 s at 1080p and would otherwise delay the first frame and
    queue up ticks behind it. The loaned slot is written once and returned unsent."""
    with contextlib.suppress(_WarmUp), node.output_buffer(output, shape, np.uint8,
                                                          pinned=pinned) as buf:
        if buf is not None:
            buf.fill(0)
        raise _WarmUp


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pinflow.nodes.camera",
        description="Send one RGBA uint8 frame per event of its timer input (e.g. tick: "
                    "pinflow/timer/hz/30) through a loaned shared-memory slot.")
    parser.add_argument("--width", type=int, default=1920,
                        help="frame width (default 1920); a .npy replay keeps its own size")
    parser.add_argument("--height", type=int, default=1080,
                        help="frame height (default 1080)")
    parser.add_argument("--frames", type=int, default=0,
                        help="exit after this many ticks, ending the run (default 0: until "
                             "STOP)")
    parser.add_argument("--output", default="image", help="output id (default: image)")
    parser.add_argument("--pinned", action=argparse.BooleanOptionalAction, default=True,
                        help="loan slots from a pinned pool that GPU consumers DMA from "
                             "(default: --pinned; an output with `pinned: true` in the YAML "
                             "is pinned either way)")
    parser.add_argument("--replay", type=Path, metavar="PATH",
                        help="send frames from a .npy ((N,H,W,4) or (H,W,4) uint8) or raw "
                             ".rgba file (N*H*W*4 bytes, sized by --width/--height) in a loop "
                             "instead of the test pattern; sent as they are, unstamped")
    args = parser.parse_args(argv)
    if args.width < 4 or args.height < 1:
        parser.error("--width must be at least 4 and --height at least 1 (the stamp needs "
                     "16 bytes in row 0)")
    if args.frames < 0:
        parser.error("--frames must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source: Replay | Pattern
    if args.replay is not None:
        try:
            source = Replay(args.replay, args.height, args.width)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"camera: cannot replay: {exc}") from None
    else:
        source = Pattern(args.height, args.width)
    height, width, _ = source.shape
    kind = "pattern" if args.replay is None else "replay"

    from pinflow.errors import PoolExhausted
    from pinflow.nodes.node import Node

    node = Node()
    shape = (height, width, 4)
    warm_up(node, args.output, shape, args.pinned)
    node.log("started", width=width, height=height, source=kind, pinned=args.pinned,
             frames=args.frames or "until STOP")
    index = sent = dropped = ticks_missed = 0
    failure: str | None = None
    last_tick: int | None = None
    render_ns = 0
    for event in node:
        if event["type"] != "INPUT":
            continue
        seq = int(event.get("seq") or 0)
        if last_tick is not None and seq > last_tick + 1:
            ticks_missed += seq - last_tick - 1  # the timer skipped them, or the queue did
        last_tick = seq
        metadata: dict[str, Any] = {"frame": index, "capture_ns": time.time_ns(),
                                    "height": height, "width": width, "source": kind,
                                    "dropped": dropped}
        try:
            with node.output_buffer(args.output, shape, np.uint8, metadata=metadata,
                                    pinned=args.pinned) as buf:
                if buf is not None:
                    start = time.perf_counter_ns()
                    metadata["checksum"] = source.render(index, buf)
                    render_ns += time.perf_counter_ns() - start
        except PoolExhausted as exc:  # on_full: block, and consumers held every slot
            failure = str(exc)
            break
        if buf is None:
            dropped += 1
        else:
            sent += 1
        index += 1
        if args.frames and index >= args.frames:
            break
    node.log("summary", frames=index, sent=sent, dropped_pool_full=dropped,
             ticks_missed=ticks_missed,
             render_ms=round(render_ns / max(sent, 1) / 1e6, 2), pinned=args.pinned)
    node.close()
    if failure:
        raise SystemExit(f"camera: stopped: {failure}")


if __name__ == "__main__":
    main()
