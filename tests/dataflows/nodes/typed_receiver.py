"""Reports dtype, shape, arrow type and values of every payload it receives."""

from report import report

from pinflow import Node


def main() -> None:
    node = Node()
    got = {}
    for event in node:
        if event["type"] != "INPUT":
            continue
        array = event.to_numpy()
        got[event["metadata"]["case"]] = {
            "arrow_type": str(event["value"].type),
            "dtype": str(array.dtype),
            "shape": list(array.shape),
            "values": event["value"].to_pylist(),
            "numpy": array.tolist(),
        }
    report(node.id, {"got": got})


if __name__ == "__main__":
    main()
