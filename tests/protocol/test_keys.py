"""Key expressions, checked with zenoh's own matching: one run's subscriptions never see
another run's keys, and each wildcard key matches what its readers expect and nothing else."""

from __future__ import annotations

import pytest
import zenoh

from pinflow.protocol import keys
from pinflow.protocol.keys import RunKeys, WireKeys


def _matches(pattern: str, key: str) -> bool:
    return zenoh.KeyExpr(pattern).intersects(zenoh.KeyExpr(key))


def test_no_key_of_one_run_matches_a_subscription_of_another() -> None:
    mine, other = RunKeys("aaaaaa"), RunKeys("bbbbbb")
    theirs = [other.data("cam", "image"), other.release("cam", "image", "gpu"),
              other.alive("cam"), other.ready("cam"), other.gone("cam"), other.launcher(),
              other.state("stop"), other.stats("cam"), other.held("gpu")]
    patterns = [mine.release_all("cam", "image"), mine.alive_all(), mine.ready_all(),
                mine.state_all(), mine.stats_all(), mine.gone_all(), mine.token_all()]
    assert not [(p, k) for p in patterns for k in theirs if _matches(p, k)]
    assert not _matches(WireKeys("aaaaaa").token_all(), WireKeys("bbbbbb").token("alive", "x"))


def test_node_tokens_are_built_and_parsed_in_one_place() -> None:
    run = RunKeys("r1")
    for kind in keys.TOKEN_KINDS:
        key = run.token(kind, "cam")
        assert _matches(run.token_all(), key)
        assert keys.parse_token(key) == (kind, "cam")
        assert keys.parse_token(WireKeys("r1").token(kind, "cam")) == (kind, "cam")
    assert (run.alive("cam"), run.ready("cam"), run.gone("cam")) == (
        run.token("alive", "cam"), run.token("ready", "cam"), run.token("gone", "cam"))
    assert not _matches(run.token_all(), run.data("cam", "image"))
    assert not _matches(run.token_all(), run.launcher())
    with pytest.raises(ValueError, match="invalid token kind"):
        run.token("data", "cam")


def test_run_states_are_the_launcher_s_two() -> None:
    assert keys.RUN_STATES == ("running", "stop")
    for builder in (RunKeys("r1"), WireKeys("r1")):
        assert _matches(builder.state_all(), builder.state("stop"))
        with pytest.raises(ValueError, match="invalid run state"):
            builder.state("paused")


def test_a_consumer_s_release_key_is_under_its_producer_s_release_subscription() -> None:
    run = RunKeys("r1")
    assert _matches(run.release_all("cam", "image"), run.release("cam", "image", "gpu"))
    assert not _matches(run.release_all("cam", "image"), run.release("cam", "depth", "gpu"))
    assert keys.last_part(run.release("cam", "image", "gpu")) == "gpu"


@pytest.mark.parametrize("part", ["", "a/b", "*", "**", "a b", "é", "a$b", "../x"])
def test_parts_that_could_widen_or_split_a_key_are_refused(part: str) -> None:
    for build in (lambda: RunKeys(part), lambda: RunKeys("r").data(part, "o"),
                  lambda: RunKeys("r").stats(part), lambda: WireKeys(part),
                  lambda: WireKeys("r").host(part), lambda: keys.daemon_key(part),
                  lambda: keys.local_run_id("r", part)):
        with pytest.raises(ValueError, match="invalid key part"):
            build()


def test_each_host_s_share_of_a_run_has_its_own_keys_and_the_wire_its_own_root() -> None:
    assert keys.local_run_id("r1", None) == "r1"
    assert keys.local_run_id("r1", "gpu") == "r1-gpu"
    assert not _matches(RunKeys("r1").stats_all(), RunKeys("r1-gpu").stats("cam"))
    wire = WireKeys("r1")
    assert wire.data("cam", "image").startswith(f"{keys.WIRE_ROOT}/r1/")
    assert not _matches(f"{keys.WIRE_ROOT}/**", RunKeys("r1").data("cam", "image"))
    assert keys.daemon_start("gpu") == f"{keys.daemon_key('gpu')}/start"
    assert _matches(wire.result_all(), wire.result("cam"))
    assert _matches(wire.log_all(), wire.log("cam")) and _matches(wire.say_all(), wire.say("b"))
