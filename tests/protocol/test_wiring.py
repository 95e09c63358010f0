"""What the launcher tells a node (PINFLOW_NODE): one typed definition, decoded strictly."""

from __future__ import annotations

import json

import pytest

from pinflow import spec as spec_module
from pinflow.errors import NodeEnvironmentError
from pinflow.protocol.wiring import ENV_VAR, Consumer, Wiring

FLOW = """
nodes:
  - {id: cam, module: x.cam, outputs: [image]}
  - {id: gpu, module: x.gpu, inputs: {image: cam/image}, outputs: [boxes]}
  - {id: sink, module: x.sink, inputs: {boxes: gpu/boxes}}
"""


def _wiring(**changes: object) -> Wiring:
    node = spec_module.loads(FLOW, "/flows/f.yml").node("gpu")
    fields: dict = dict(run_id="r1", dataflow="/flows/f.yml", node=node.to_dict(),
                        listen=["unixsock-stream/a"], connect=["unixsock-stream/b"],
                        consumers={"boxes": [Consumer("sink", "boxes", 4),
                                             Consumer("_wire", "wire", 8)]},
                        consumer_secret="ab" * 16, consumer_keys={"sink": "cd" * 16})
    fields.update(changes)
    return Wiring(**fields)


def test_the_wiring_round_trips_through_the_environment() -> None:
    wiring = _wiring(restarts=2, pinned_budget=1 << 30)
    env = {ENV_VAR: wiring.to_env()}
    assert Wiring.from_env(env) == wiring
    body = json.loads(env[ENV_VAR])
    assert body["node"]["id"] == "gpu", "test nodes read their id from here"
    assert body["consumers"]["boxes"][0] == {"node": "sink", "input": "boxes", "queue_size": 4}
    assert wiring.spec.id == "gpu"
    assert wiring.peers() == {"cam", "sink", "_wire"}
    assert wiring.consumer_ids() == {"sink", "_wire"}
    assert wiring.restarted(3).restarts == 3 and wiring.restarts == 2


@pytest.mark.parametrize("raw", [
    "not json", "[]", json.dumps({"run_id": "r1"}),
    json.dumps({**json.loads(_wiring().to_env()), "unknown": 1}),
    json.dumps({**json.loads(_wiring().to_env()),
                "consumers": {"boxes": [["sink", "boxes", 4]]}}),
    json.dumps({**json.loads(_wiring().to_env()),
                "consumers": {"boxes": [{"node": "sink", "input": "boxes", "queue_size": 0}]}}),
])
def test_a_malformed_wiring_is_a_node_environment_error(raw: str) -> None:
    with pytest.raises(NodeEnvironmentError, match=f"{ENV_VAR} is malformed"):
        Wiring.from_env({ENV_VAR: raw})


def test_a_process_not_started_by_pinflow_is_told_how_to_start_it() -> None:
    with pytest.raises(NodeEnvironmentError, match="pinflow run FILE"):
        Wiring.from_env({})
