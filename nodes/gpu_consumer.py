"""Built-in node: the GPU end of a camera pipeline, with a CPU fallback.

Per frame it does what a model's preprocessing does: RGB channels-first in [0, 1], resized
to 640x360, plus crops at the detector's latest boxes. With ``device: cuda`` on the input,
``event.to_torch()`` is already a CUDA tensor (one DMA from the pinned slot); otherwise it
is a zero-copy CPU tensor over the slot. On CUDA the loop is asynchronous, as a model's
would be: each frame's work is queued on the current stream followed by an event, and a
watcher thread notes when each event completed (no per-frame synchronisation). Latency is
taken when the result is usable on the device and sent per frame on ``latency`` for a sink.
Every ``--verify-every``-th frame is checked against its stamp and the camera's checksum.

    pinflow YAML:  module: pinflow.nodes.gpu_consumer
                   inputs: {image: {source: camera/image, device: cuda},
                            detections: detector/detections}
"""

from __future__ import annotations

import argparse
import collections
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pinflow.nodes import framing

try:
    import torch
    import torch.nn.functional as F
except ModuleNotFoundError:  # reported by main(); the module stays importable without torch
    torch = None  # type: ignore[assignment]
    F = None  # type: ignore[assignment]

TORCH_MISSING = "gpu_consumer needs torch: pip install 'pinflow[torch]'"
OUT_SIZE = (360, 640)
"""(height, width) of the resized frame."""
KEEP_DETECTIONS = 64
"""Frames whose boxes are remembered, for frames that arrive after their detections."""

LATENCY_TYPE = pa.struct([
    ("frame", pa.int64()), ("latency_ns", pa.int64()), ("device", pa.string()),
    ("verified", pa.bool_()),
])
"""Schema of the ``latency`` output; ``verified`` is null on frames that were not checked."""

BoxT = tuple[int, int, int, int]


@dataclass
class Processed:
    """What one frame became: the resized (3, H, W) float image and float crops."""

    resized: Any
    crops: list[Any]


def process(image: Any, boxes: Sequence[BoxT] = (), size: tuple[int, int] = OUT_SIZE,
            resize_first: bool | None = None) -> Processed:
    """Normalise an (H, W, 3|4) uint8 tensor to RGB channels-first floats in [0, 1], resize
    it to ``size`` (height, width), and crop each ``(x0, y0, x1, y1)`` box at full resolution.

    ``resize_first`` (default: on CPU) resizes the uint8 RGBA image before converting to
    float: torch has a vectorised uint8 RGBA path, and converting a whole 1080p frame to
    float first costs ~45 ms on one core against ~3 ms this way. CUDA has no uint8 resize, and
    there the float conversion is cheap, so it normalises first. Both give the same image up
    to uint8 rounding of the resized values.
    """
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != torch.uint8:
        raise ValueError(f"expected an (H, W, 3|4) uint8 tensor, got {image.dtype} "
                         f"{tuple(image.shape)}")
    if resize_first is None:
        resize_first = image.device.type == "cpu"
    nchw = image.permute(2, 0, 1).unsqueeze(0)  # a view: RGBA is channels-last already
    if resize_first:
        small = F.interpolate(nchw, size=size, mode="bilinear", antialias=True,
                              align_corners=False)
        resized = small[0, :3].float().div_(255.0)
    else:
        rgb = nchw[:, :3].float().div_(255.0)
        resized = F.interpolate(rgb, size=size, mode="bilinear", antialias=True,
                                align_corners=False)[0].clamp_(0.0, 1.0)
    height, width = image.shape[:2]
    crops = []
    for x0, y0, x1, y1 in boxes:
        x0, x1 = max(0, int(x0)), min(width, int(x1))
        y0, y1 = max(0, int(y0)), min(height, int(y1))
        if x1 > x0 and y1 > y0:
            crops.append(image[y0:y1, x0:x1, :3].permute(2, 0, 1).float().div_(255.0))
    return Processed(resized, crops)


def warm_up(devices: Iterable[str], shape: tuple[int, int, int] = (1080, 1920, 4)) -> None:
    """Run the preprocessing once on each device before the first frame. CUDA loads each
    kernel the first time it runs: on an H200 this pipeline's first frame took 77-109 ms,
    holding it and the frames queued behind it; warmed up right after ``Node()`` (62 ms),
    the first frame waited 34 ms in all and took 0.3 ms."""
    for device in devices:
        process(torch.zeros(shape, dtype=torch.uint8, device=device), [(0, 0, 8, 8)])
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)


def check_frame(frame: np.ndarray, metadata: dict[str, Any]) -> bool:
    """Does the frame match the camera's checksum (and, for the pattern, its own stamp and
    frame number)? Replayed frames carry no stamp, so only the checksum applies to them."""
    if frame.dtype != np.uint8 or frame.ndim != 3:
        return False
    if framing.checksum(frame) != metadata.get("checksum"):
        return False
    if metadata.get("source") == "replay":
        return True
    index, ok = framing.verify(frame)
    return ok and index == metadata.get("frame")


class BoxBook:
    """Boxes per frame from the detector; frames without their own use the latest ones."""

    def __init__(self, keep: int = KEEP_DETECTIONS) -> None:
        self._by_frame: collections.OrderedDict[int, list[BoxT]] = collections.OrderedDict()
        self._keep = keep
        self.latest: list[BoxT] = []

    def add(self, frame: int, boxes: list[BoxT]) -> None:
        self._by_frame[frame] = boxes
        self._by_frame.move_to_end(frame)
        while len(self._by_frame) > self._keep:
            self._by_frame.popitem(last=False)
        self.latest = boxes

    def for_frame(self, frame: int) -> tuple[list[BoxT], bool]:
        """``(boxes, exact)``: ``exact`` when the detector already answered for ``frame``."""
        boxes = self._by_frame.get(frame)
        return (boxes, True) if boxes is not None else (self.latest, False)


def boxes_from_arrow(value: pa.Array) -> dict[int, list[BoxT]]:
    """Group a ``detections`` message's rows by frame."""
    grouped: dict[int, list[BoxT]] = {}
    for row in value.to_pylist():
        grouped.setdefault(int(row["frame"]), []).append(
            (row["x0"], row["y0"], row["x1"], row["y1"]))
    return grouped


def latency_record(frame: int, latency_ns: int, device: str, verified: bool | None
                   ) -> pa.StructArray:
    return pa.array([{"frame": frame, "latency_ns": latency_ns, "device": device,
                      "verified": verified}], type=LATENCY_TYPE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pinflow.nodes.gpu_consumer",
        description="Preprocess every frame of input 'image' as a model would (normalise, "
                    "resize to 640x360, crop at the boxes of input 'detections') on CUDA or "
                    "the CPU, and send per-frame latency records.")
    parser.add_argument("--output", default="latency",
                        help="output id of the per-frame records (default: latency)")
    parser.add_argument("--verify-every", type=int, default=10, metavar="N",
                        help="check every N-th frame against its stamp and checksum; 0 turns "
                             "checking off (default 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the CPU fallback; the pipeline's other "
                             "processes share the cores (default 1)")
    return parser.parse_args(argv)


class Completions:
    """Frames whose device work is queued: a thread waits for each frame's marker event in
    order (a blocking event: it sleeps, no spinning) and notes when the frame was done.

    At most ``depth`` frames are in flight; beyond that :meth:`add` waits for the oldest,
    which bounds the queued work without synchronising every frame.
    """

    def __init__(self, depth: int = 4) -> None:
        self._queue: queue.Queue[tuple[Any, dict[str, Any]] | None] = queue.Queue(depth)
        self._done: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="gpu-consumer-completions")
        self._thread.start()

    def add(self, marker: Any, record: dict[str, Any]) -> None:
        """``marker``: an event recorded after the frame's work; ``record`` comes back from
        :meth:`finished` with ``done_ns`` (wall clock) once the marker completed."""
        self._queue.put((marker, record))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            marker, record = item
            marker.synchronize()
            record["done_ns"] = time.time_ns()
            self._done.put(record)

    def finished(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> list[dict[str, Any]]:
        """Wait for every frame in flight; their records."""
        self._queue.put(None)
        self._thread.join()
        return self.finished()


@dataclass
class Tally:
    """What the exit summary reports; crops of a frame use its own boxes (exact) only when
    the detector finished that frame first, else the latest ones."""

    frames: int = 0
    passed: int = 0
    failed: int = 0
    exact_boxes: int = 0
    stale_boxes: int = 0
    busy_ns: int = 0
    """Host time per frame (on CUDA: queueing the work, not waiting for it)."""


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if torch is None:
        raise SystemExit(TORCH_MISSING)
    torch.set_num_threads(max(1, args.threads))
    from pinflow.nodes.node import Node
    from pinflow.nodes.warmup import warm_up_arrow

    warm_up_arrow()  # its latency records are Arrow arrays made from Python values
    node = Node()
    warm_up(node.stats()["devices"])  # the devices its inputs deliver to (none on the CPU)
    book = BoxBook()
    tally = Tally()
    device = "none"
    completions = Completions()

    def send(record: dict[str, Any]) -> None:
        latency_ns = record["done_ns"] - record["capture_ns"]
        node.send_output(args.output, latency_record(record["frame"], latency_ns, record["device"],
                                                     record["verified"]),
                         metadata={"frame": record["frame"], "camera_dropped": record["dropped"],
                                   "queue_dropped": record["queue_dropped"]})

    for event in node:
        if event["type"] != "INPUT":
            continue
        if event["id"] == "detections":
            grouped = boxes_from_arrow(event["value"])
            if event["metadata"].get("frame") is not None:  # "found nothing" counts too
                grouped.setdefault(int(event["metadata"]["frame"]), [])
            for frame, boxes in grouped.items():
                book.add(frame, boxes)
            continue
        metadata = event["metadata"]
        index = int(metadata.get("frame", -1))
        start = time.perf_counter_ns()
        tensor = event.to_torch()
        device = str(tensor.device)
        boxes, exact = book.for_frame(index)
        result = process(tensor, boxes)
        marker, done_ns = None, time.time_ns()
        if tensor.is_cuda:  # queued, not waited for: the watcher notes when it is done
            marker = torch.cuda.Event(blocking=True)
            marker.record(torch.cuda.current_stream(tensor.device))
        verified = None
        if args.verify_every and tally.frames % args.verify_every == 0:
            verified = check_frame(event.to_numpy(), metadata)
            tally.passed += verified
            tally.failed += not verified
            if not verified:
                node.log("frame failed its integrity check", level="error", frame=index)
        del tensor, result
        event.release()
        tally.busy_ns += time.perf_counter_ns() - start
        tally.frames += 1
        tally.exact_boxes += exact
        tally.stale_boxes += not exact
        record = {"frame": index, "capture_ns": int(metadata.get("capture_ns", 0)),
                  "device": device, "verified": verified, "dropped": metadata.get("dropped"),
                  "queue_dropped": node.stats()["inputs"][event["id"]]["dropped"]}
        if marker is None:
            record["done_ns"] = done_ns
            send(record)
        else:
            completions.add(marker, record)
        for done in completions.finished():
            send(done)
    for done in completions.close():
        send(done)
    node.log("summary", frames=tally.frames, integrity_passed=tally.passed,
             integrity_failed=tally.failed, device=device,
             crops_exact=tally.exact_boxes, crops_latest=tally.stale_boxes,
             mean_ms=round(tally.busy_ns / max(tally.frames, 1) / 1e6, 2))
    node.close()


if __name__ == "__main__":
    main()
