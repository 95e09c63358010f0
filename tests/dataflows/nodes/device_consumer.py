"""Asks for device delivery; reports where frames landed and what the event said."""

import sys

import numpy as np
from frames import check, inside_shared_memory
from report import report

from pinflow import CudaUnavailable, Node


def main() -> None:
    node = Node()
    seen = []
    cuda_error = None
    for event in node:
        if event["type"] != "INPUT":
            continue
        tensor = event.to_torch()
        array = event.to_numpy()
        entry = {
            "pinned": event["pinned"], "device": event["device"],
            "tensor_device": str(tensor.device), "index": check(array),
            "zero_copy": inside_shared_memory(array),
            "tensor_shares_memory": tensor.data_ptr() == array.__array_interface__["data"][0],
            "shape": list(tensor.shape),
        }
        if cuda_error is None:
            try:
                event.to_torch("cuda")
            except CudaUnavailable as exc:
                cuda_error = str(exc)
        seen.append(entry)
        assert np.all(array.shape == tensor.shape)
    report(node.id, {"seen": seen, "cuda_error": cuda_error,
                     "stats": node.stats()["devices"]})
    sys.stdout.flush()


if __name__ == "__main__":
    main()
