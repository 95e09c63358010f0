"""The rules written once in ``pinflow.spec.units``, and every place that must use them: the
byte-size parser (YAML and both environment variables), the id rule (spec, segment names,
key expressions, lock and liveness files, the wire), ``mib``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pinflow.errors import SettingError, SpecError
from pinflow.protocol.keys import RunKeys, WireKeys, daemon_key
from pinflow.spec import loads
from pinflow.spec.units import (
    ID_RULE,
    MAX_SLOTS,
    SIZE_UNITS,
    check_id,
    is_id,
    mib,
    parse_size,
    size_from_env,
)
from pinflow.transport import budget, channel, cleanup, liveness, pool, segment


@pytest.mark.parametrize(("text", "expected"), [
    ("4096", 4096), (" 7 ", 7), ("8 MiB", 8 << 20), ("8MiB", 8 << 20), ("4 GB", 4 * 10**9),
    ("2 TiB", 2 << 40), ("3 TB", 3 * 10**12), ("5 KB", 5000), ("1 KiB", 1024), ("0", 0),
    (12, 12), (0, 0),
])
def test_byte_counts_take_an_int_or_a_number_with_a_unit(text: Any, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MiB", "1.5 GiB", "-1", "4 XB", "4 gib", "4 G", True, -1,
                                 2.0, None])
def test_anything_else_is_not_a_byte_count(bad: Any) -> None:
    with pytest.raises(ValueError, match="not a byte count"):
        parse_size(bad)


def test_every_unit_is_accepted_by_the_yaml_too() -> None:
    for unit, factor in SIZE_UNITS.items():
        spec = loads(f"pinned_budget: 3 {unit}\nnodes: [{{id: a, module: m}}]\n", "x.yml")
        assert spec.pinned_budget == 3 * factor


def test_pinned_budget_env_takes_what_the_yaml_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """'4 GB' was refused by PINFLOW_PINNED_BUDGET while a dataflow accepted it."""
    monkeypatch.setenv(budget.BUDGET_ENV, "4 GB")
    assert budget.budget_bytes() == 4 * 10**9
    assert budget.budget_bytes(override=5) == 5


def test_max_pool_bytes_env_takes_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """PINFLOW_MAX_POOL_BYTES took a bare int only."""
    monkeypatch.setenv(channel.MAX_POOL_BYTES_ENV, "64 MiB")
    assert channel.max_pool_bytes() == 64 << 20
    monkeypatch.delenv(channel.MAX_POOL_BYTES_ENV)
    assert channel.max_pool_bytes() == channel.DEFAULT_MAX_POOL_BYTES


@pytest.mark.parametrize("read", [budget.budget_bytes, channel.max_pool_bytes])
def test_a_bad_env_value_names_the_variable_and_the_form(
        read: Callable[[], int], monkeypatch: pytest.MonkeyPatch) -> None:
    name = budget.BUDGET_ENV if read is budget.budget_bytes else channel.MAX_POOL_BYTES_ENV
    monkeypatch.setenv(name, "lots")
    with pytest.raises(SettingError) as info:
        read()
    assert str(info.value).startswith(f"{name}='lots' is not a byte count")
    assert f"{name}='4 GiB'" in str(info.value)


def test_an_empty_env_value_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINFLOW_TEST_SIZE", "")
    assert size_from_env("PINFLOW_TEST_SIZE") is None


@pytest.mark.parametrize("good", ["a", "cam-0", "node_1", "A9"])
def test_ids_are_letters_digits_underscore_and_dash(good: str) -> None:
    assert is_id(good) and check_id("node id", good) == good


# Every way an id reaches a name, a key or a path; each must refuse what the YAML refuses.
_ID_USERS: dict[str, Callable[[str], object]] = {
    "check_id": lambda v: check_id("node id", v),
    "RunKeys": RunKeys,
    "RunKeys.data": lambda v: RunKeys("run").data(v, "out"),
    "WireKeys": WireKeys,
    "daemon_key": daemon_key,
    "segment_name": lambda v: segment.segment_name("run", v, "out", "ab12"),
    "run_glob": segment.run_glob,
    "alive_name": lambda v: liveness.alive_name("run", v),
    "lock_name": liveness.lock_name,
    "remove_node_segments": lambda v: cleanup.remove_node_segments("run", v),
}


@pytest.mark.parametrize("user", sorted(_ID_USERS))
@pytest.mark.parametrize("bad", ["", "a.b", "a/b", "a b", "a\n", "é", "..", 7])
def test_every_id_user_refuses_what_the_rule_refuses(user: str, bad: Any) -> None:
    """Before: key expressions checked with ``^...$``, which lets ``'a\\n'`` through."""
    with pytest.raises(ValueError, match=f"invalid .*: {ID_RULE}"):
        _ID_USERS[user](bad)


def test_segment_names_parse_back_by_the_same_rule() -> None:
    name = segment.segment_name("run-1", "cam_0", "image", "ab12", pinned=True)
    assert segment.parse_segment_name(name) == ("run-1", "cam_0", "image", "ab12")
    assert segment.parse_segment_name("pinflow-run.a b.c.ab12") is None


def test_the_yaml_refuses_ids_by_the_same_rule() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes: [{id: 'a.b', module: m}]\n", "x.yml")
    assert info.value.messages == [f"x.yml:1: node 'a.b': invalid id; {ID_RULE}"]


def test_mib_prints_one_decimal_with_thousands() -> None:
    assert mib(36 << 20) == "36.0 MiB"
    assert mib(3 << 29) == "1,536.0 MiB"


def test_the_pool_uses_the_spec_slot_limit() -> None:
    assert pool.MAX_SLOTS is MAX_SLOTS
    with pytest.raises(SpecError, match=f"slots must be an integer from 1 to {MAX_SLOTS}"):
        loads(f"nodes: [{{id: a, module: m, outputs: [{{id: o, slots: {MAX_SLOTS + 1}}}]}}]\n",
              "x.yml")
