"""The camera's test pattern: stamped, verifiable, cheap, and moving where we say it does."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pinflow.nodes import framing


def _frame(index: int, height: int = 240, width: int = 320) -> np.ndarray:
    frame = np.empty((height, width, 4), dtype=np.uint8)
    framing.render(index, frame, framing.make_background(height, width))
    return frame


def test_a_rendered_frame_verifies_with_its_index():
    assert framing.verify(_frame(7)) == (7, True)


def test_the_stamp_holds_the_index_little_endian_and_the_checksum():
    frame = _frame(123456789)
    assert int.from_bytes(frame[0].reshape(-1)[:8].tobytes(), "little") == 123456789
    assert framing.read_stamp(frame) == (123456789, framing.checksum(frame))


def test_rendering_is_deterministic():
    assert np.array_equal(_frame(42), _frame(42))


def test_the_square_sits_at_the_expected_box_and_nothing_else_is_that_bright():
    frame = _frame(17)
    x0, y0, x1, y1 = framing.expected_box(17, 240, 320)
    assert (x1 - x0, y1 - y0) == (framing.SQUARE, framing.SQUARE)
    assert np.all(frame[y0:y1, x0:x1, :3] == framing.SQUARE_VALUE)
    outside = np.ones(frame.shape[:2], dtype=bool)
    outside[y0:y1, x0:x1] = False
    outside[0, :4] = False  # the stamp's 16 bytes
    assert frame[outside][:, :3].max() <= framing.BACKGROUND_MAX


def test_the_square_moves_every_frame_and_stays_inside_for_any_index():
    boxes = [framing.expected_box(i, 240, 320) for i in range(2000)]
    assert all(a != b for a, b in itertools.pairwise(boxes))
    assert all(0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240 for x0, y0, x1, y1 in boxes)


def test_a_torn_frame_made_of_two_frames_fails_verification():
    # frames 10 and 11 draw their squares in the bottom half, at different places
    assert all(y0 >= 120 for _, y0, _, _ in (framing.expected_box(i, 240, 320)
                                              for i in (10, 11)))
    torn = _frame(10)
    torn[120:] = _frame(11)[120:]
    assert framing.verify(torn) == (10, False)


def test_a_single_changed_byte_in_a_sampled_row_fails_verification():
    frame = _frame(3)
    frame[framing.SAMPLE_EVERY, 5, 1] ^= 0xFF
    assert framing.verify(frame)[1] is False


def test_a_changed_index_fails_verification():
    frame = _frame(3)
    frame[0, 0, 0] ^= 1
    assert framing.verify(frame) == (2, False)


def test_the_checksum_works_on_unstamped_frames_and_ignores_the_checksum_field():
    frame = np.random.default_rng(1).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    before = framing.checksum(frame)
    frame[0, 2:4] = 0  # bytes 8-16 of row 0
    assert framing.checksum(frame) == before


def test_tiny_frames_shrink_the_square_and_still_verify():
    frame = _frame(5, height=20, width=12)
    x0, y0, x1, y1 = framing.expected_box(5, 20, 12)
    assert (x1 - x0, y1 - y0) == (6, 6)
    assert framing.verify(frame) == (5, True)


def test_bad_frames_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="uint8"):
        framing.checksum(np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        framing.make_background(0, 10)


def test_a_reused_1080p_buffer_verifies_as_each_frame_rendered_into_it():
    """The camera renders every frame into the same slot-sized buffer: nothing of the
    previous frame may survive into the next one's checksum. (Its cost is the benchmark's
    business, not a test's.)"""
    frame = np.empty((1080, 1920, 4), dtype=np.uint8)
    background = framing.make_background(1080, 1920)
    for index in range(20):
        framing.render(index, frame, background)
        assert framing.verify(frame) == (index, True)
