"""Whom a producer addresses: a consumer whose zenoh token vanished but whose link still
stands is still there (links are hung up only when the consumer's process is gone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pinflow.testing import use_standin
from pinflow.testing.rig import make_rig


def test_a_linked_consumer_whose_token_vanished_still_gets_every_frame(tmp_path: Path):
    """Both sides paused past the zenoh lease see each other's token go for a while; the
    link between them never broke. Before: the producer counted the consumer unreachable
    and dropped every frame until the token came back (a paused producer's stream had a gap
    after it resumed)."""
    tokens: set[str] = {"gpu"}
    with use_standin() as runtime, make_rig(tmp_path, runtime, tokens_seen=tokens) as rig:
        rig.send(np.full(8192, 1, dtype=np.uint8))
        view, _, _ = rig.receive()
        assert int(view[0]) == 1
        del view
        tokens.clear()  # the producer no longer sees the consumer's token
        for value in (2, 3, 4):
            rig.send(np.full(8192, value, dtype=np.uint8))
            view, _, _ = rig.receive()
            assert int(view[0]) == value and int(view[-1]) == value
            del view
        assert rig.channel.stats.unreachable == 0
        rig.channel.consumer_lost("gpu")  # its process is really gone: the link is hung up
        rig.send(np.full(8192, 5, dtype=np.uint8))
        assert rig.channel.stats.unreachable == 1, "with no token and no link: counted"
