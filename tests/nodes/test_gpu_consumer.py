"""The GPU consumer's processing on CPU tensors: shapes, value range, crops, integrity."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pinflow.nodes import framing, gpu_consumer

torch = pytest.importorskip("torch")


def _frame(index: int = 4, height: int = 240, width: int = 320) -> np.ndarray:
    frame = np.empty((height, width, 4), dtype=np.uint8)
    framing.render(index, frame, framing.make_background(height, width))
    return frame


def test_a_frame_becomes_rgb_channels_first_at_640x360():
    result = gpu_consumer.process(torch.from_numpy(_frame(height=1080, width=1920)))
    assert result.resized.shape == (3, 360, 640)
    assert result.resized.dtype == torch.float32
    assert result.crops == []


@pytest.mark.parametrize("resize_first", [True, False])
def test_values_are_normalised_to_the_unit_range(resize_first):
    frame = np.zeros((120, 160, 4), dtype=np.uint8)
    frame[:, 80:, :3] = 255
    out = gpu_consumer.process(torch.from_numpy(frame), size=(60, 80),
                               resize_first=resize_first).resized
    assert out.min().item() == 0.0 and out.max().item() == 1.0
    assert torch.all((out >= 0) & (out <= 1))


def test_resizing_first_or_normalising_first_gives_the_same_image():
    image = torch.from_numpy(_frame())
    a = gpu_consumer.process(image, resize_first=True).resized
    b = gpu_consumer.process(image, resize_first=False).resized
    assert (a - b).abs().max().item() <= 1.5 / 255


def test_crops_are_the_boxes_at_full_resolution_clipped_to_the_frame():
    frame = _frame(7)
    x0, y0, x1, y1 = framing.expected_box(7, 240, 320)
    boxes = [(x0, y0, x1, y1), (300, 200, 400, 300), (10, 10, 10, 20)]
    crops = gpu_consumer.process(torch.from_numpy(frame), boxes).crops
    assert [tuple(c.shape) for c in crops] == [(3, y1 - y0, x1 - x0), (3, 40, 20)]
    assert torch.all(crops[0] == 1.0), "the square is white"
    expected = torch.from_numpy(frame[200:240, 300:320, :3]).permute(2, 0, 1).float() / 255
    assert torch.allclose(crops[1], expected)


def test_the_input_frame_is_left_untouched():
    frame = _frame()
    before = frame.copy()
    gpu_consumer.process(torch.from_numpy(frame), [(0, 0, 64, 64)])
    assert np.array_equal(frame, before)


def test_non_image_tensors_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        gpu_consumer.process(torch.zeros((10, 10, 4)))


def test_integrity_check_accepts_good_frames_and_catches_torn_or_mislabelled_ones():
    frame = _frame(12)
    good = {"frame": 12, "checksum": framing.checksum(frame), "source": "pattern"}
    assert gpu_consumer.check_frame(frame, good)
    assert not gpu_consumer.check_frame(frame, {**good, "frame": 13})
    torn = frame.copy()
    torn[120:] = _frame(13)[120:]
    assert not gpu_consumer.check_frame(torn, good)


def test_replayed_frames_are_checked_by_checksum_only():
    frame = np.random.default_rng(0).integers(0, 256, (32, 48, 4), dtype=np.uint8)
    metadata = {"frame": 0, "checksum": framing.checksum(frame), "source": "replay"}
    assert gpu_consumer.check_frame(frame, metadata)
    frame[0, 20, 0] ^= 1
    assert not gpu_consumer.check_frame(frame, metadata)


def test_frames_use_their_own_boxes_or_else_the_latest():
    book = gpu_consumer.BoxBook(keep=2)
    assert book.for_frame(0) == ([], False)
    book.add(1, [(1, 1, 2, 2)])
    book.add(2, [])
    assert book.for_frame(1) == ([(1, 1, 2, 2)], True)
    assert book.for_frame(2) == ([], True)
    assert book.for_frame(3) == ([], False)
    book.add(3, [(3, 3, 4, 4)])
    assert book.for_frame(1) == ([(3, 3, 4, 4)], False), "only the last 2 frames are kept"


def test_latency_records_carry_null_when_not_verified():
    record = gpu_consumer.latency_record(3, 1_500_000, "cpu", None)
    assert record.type == gpu_consumer.LATENCY_TYPE
    assert record.to_pylist() == [{"frame": 3, "latency_ns": 1_500_000, "device": "cpu",
                                   "verified": None}]


def test_without_torch_the_node_exits_naming_the_extra_to_install(monkeypatch):
    monkeypatch.setattr(gpu_consumer, "torch", None)
    with pytest.raises(SystemExit, match=r"pip install 'pinflow\[torch\]'"):
        gpu_consumer.main([])


def test_device_frames_complete_in_the_background_without_a_per_frame_wait():
    """The CUDA loop queues each frame's work and a marker event; the watcher notes when the
    marker completed. Shown with the CUDA stand-in's streams and blocking events."""
    from pinflow.testing import StandinCuda

    gpu = StandinCuda()
    stream = gpu.new_stream(0, label="consumer")
    gate = threading.Event()
    completions = gpu_consumer.Completions(depth=4)
    try:
        gpu.launch(stream, lambda: gate.wait(10))  # the device is busy with earlier work
        for frame in range(3):
            marker = gpu.new_event()
            gpu.record_event(marker, stream)
            completions.add(marker, {"frame": frame})  # returns: nothing waits per frame
        assert completions.finished() == [], "no frame is done while its work is queued"
        gate.set()
        records = completions.close()
    finally:
        gpu.close()
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert all(r["done_ns"] > 0 for r in records)
    gpu.check()


def test_the_warm_up_runs_the_whole_preprocessing_once_per_device(monkeypatch):
    """On a GPU it loads the kernels before the first frame (measured on an H200); here the
    same call runs on the CPU, and a node without CUDA (no devices) does nothing."""
    seen = []
    real = gpu_consumer.process

    def spy(image, boxes=(), **options):
        out = real(image, boxes, **options)
        seen.append((str(image.device), tuple(image.shape), tuple(out.resized.shape),
                     len(out.crops)))
        return out

    monkeypatch.setattr(gpu_consumer, "process", spy)
    gpu_consumer.warm_up([], shape=(48, 64, 4))
    assert seen == []
    gpu_consumer.warm_up(["cpu"], shape=(48, 64, 4))
    assert seen == [("cpu", (48, 64, 4), (3, 360, 640), 1)]
