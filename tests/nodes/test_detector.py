"""The detector's pure functions: it finds the camera's square, and other blobs, cheaply."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pinflow.nodes import detector, framing


def _frame(index: int, height: int, width: int) -> np.ndarray:
    frame = np.empty((height, width, 4), dtype=np.uint8)
    framing.render(index, frame, framing.make_background(height, width))
    return frame


@pytest.mark.parametrize(("height", "width"), [(1080, 1920), (240, 320), (101, 203)])
def test_the_square_of_a_rendered_frame_is_found_at_its_expected_box(height, width):
    for index in range(0, 200, 13):
        boxes = detector.detect(_frame(index, height, width))
        assert len(boxes) == 1
        found = np.array(boxes[0][:4])
        expected = np.array(framing.expected_box(index, height, width))
        assert np.abs(found - expected).max() <= 2, (index, boxes, expected)
        assert boxes[0].score > 0.9


def test_separate_blobs_get_separate_boxes_largest_first():
    frame = _frame(0, 240, 320)  # square at the top-left corner
    frame[150:200, 200:300, :3] = 250
    frame[40:60, 250:270, :3] = 250
    boxes = detector.detect(frame)
    assert [tuple(b[:4]) for b in boxes] == [(200, 150, 300, 200), (0, 0, 64, 64),
                                             (250, 40, 270, 60)]


def test_a_frame_without_bright_pixels_has_no_boxes():
    assert detector.detect(framing.make_background(240, 320)) == []


def test_max_boxes_keeps_only_the_largest():
    frame = framing.make_background(240, 320)
    for i in range(5):
        frame[10:30, 10 + 60 * i: 20 + 60 * i + 4 * i, :3] = 255
    boxes = detector.detect(frame, max_boxes=2)
    assert [b.x1 - b.x0 for b in boxes] == [26, 22]


def test_block_brightness_is_the_mean_rgb_of_each_tile_without_alpha():
    frame = np.zeros((16, 24, 4), dtype=np.uint8)
    frame[..., 3] = 255
    frame[:8, :8, 0] = 90
    frame[8:, 16:, :3] = 30
    grid = detector.block_brightness(frame, 8)
    assert grid.shape == (2, 3)
    assert grid[0, 0] == pytest.approx(30.0)
    assert grid[1, 2] == pytest.approx(30.0)
    assert grid[0, 1] == grid[1, 0] == 0.0


def test_rgb_frames_work_too():
    frame = _frame(9, 240, 320)[..., :3].copy()
    boxes = detector.detect(frame)
    assert tuple(boxes[0][:4]) == framing.expected_box(9, 240, 320)


def test_detections_become_an_arrow_struct_array_with_the_documented_schema():
    array = detector.to_arrow(5, [detector.Box(1, 2, 3, 4, 0.5)])
    assert array.type == detector.DETECTIONS_TYPE
    assert array.to_pylist() == [{"frame": 5, "x0": 1, "y0": 2, "x1": 3, "y1": 4,
                                  "score": 0.5}]
    empty = detector.to_arrow(6, [])
    assert isinstance(empty, pa.StructArray) and len(empty) == 0
