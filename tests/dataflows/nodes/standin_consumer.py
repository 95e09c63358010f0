"""Device inputs on the CUDA stand-in: every frame is checked on the "device" by a kernel
queued on the current stream, with no synchronisation per frame; reports what the kernels
saw, the copier's statistics, how segments are mapped and the stand-in's violations."""

import os
import threading
import time

from frames import check, shm_ranges
from report import report

from pinflow import Node
from pinflow.testing import active


def main() -> None:
    node = Node()
    gpu = active()
    assert gpu is not None, "PINFLOW_GPU_RUNTIME=standin is not set"
    time.sleep(float(os.environ.get("START_DELAY_S", "0")))  # let frames queue up
    stream = gpu.current_stream(0)
    seen: dict[str, list] = {}
    lock = threading.Lock()
    mappings = set()
    expected = int(os.environ["EXPECTED"])
    count = 0
    for event in node:
        if event["type"] != "INPUT":
            continue
        tensor = event.to_torch()
        mappings.update(perms for perms in _perms())

        def kernel(array, name=event["id"]):
            with lock:
                seen.setdefault(name, []).append(check(array))

        gpu.launch(stream, kernel, tensor)
        del tensor
        event.release()
        count += 1
        if count == expected:
            break
    stream.synchronize()
    stats = node.stats()["devices"]
    node.send_output("done", b"x")
    report(node.id, {"seen": seen, "stats": stats, "violations": gpu.violations,
                     "contexts": sorted(gpu.contexts), "mappings": sorted(mappings),
                     "device": "cuda:0"})


def _perms() -> list[str]:
    with open("/proc/self/maps") as maps:
        wanted = {path for _start, _end, path in shm_ranges()}
        return [line.split()[1] for line in maps if line.split()[-1] in wanted]


if __name__ == "__main__":
    main()
