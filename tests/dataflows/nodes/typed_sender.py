"""Sends one payload of each supported kind, then exits (see tests/test_runtime.py)."""

import numpy as np
import pyarrow as pa

from pinflow import Node


def payloads() -> dict:
    cases = {
        "f32_2d": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i64": np.array([1, -2, 3], dtype=np.int64),
        "u16_3d": np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
        "bool": np.array([True, False, True]),
        "f16": np.array([0.5, 1.5], dtype=np.float16),
        "big_endian": np.array([1, 2], dtype=">i4"),
        "bytes": b"hello",
        "arrow_i32": pa.array([1, 2, 3], type=pa.int32()),
        "arrow_nullable": pa.array([1, None, 3], type=pa.int64()),
        "arrow_str": pa.array(["a", "bc", None]),
        "arrow_struct": pa.array([{"x": 1, "label": "car"}, {"x": 2, "label": "dog"}]),
        "large_u8": np.arange(100_000, dtype=np.uint32).astype(np.uint8),
        "noncontig": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],
    }
    try:
        import torch

        cases["torch_f32"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    except ModuleNotFoundError:
        pass
    return cases


def main() -> None:
    node = Node()
    for name, data in payloads().items():
        node.send_output("data", data, metadata={"case": name})


if __name__ == "__main__":
    main()
