"""The benchmark's arms, declared once: name, label and what each runs. ``pinflow bench
--arms`` takes its choices from here.

Same frames, same consumer work in every arm, one run; ratios matter, machines are noisy.
The CLI imports this module to build its parser, for every command: keep it free of heavy
imports (:mod:`~pinflow.tools.netns` is imported when an arm's availability is asked).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    """The arm's row in the table and its ``label`` in the JSON report."""
    baseline: str | None = None
    """None: a pinflow dataflow; else the ``--mode`` of :mod:`pinflow.tools.baselines`."""
    pinned: bool = False
    """pinflow arms: a ``pinned: true`` pool and the camera's loan API."""
    cross_host: bool = False
    """pinflow arms: the consumer on a ``pinflow daemon`` in another network namespace."""


ARMS: dict[str, Arm] = {arm.name: arm for arm in (
    # pinflow, pinned=True loan API, device delivery (`device: cuda`)
    Arm("pinned", "pinflow pinned (loan API, device delivery)", pinned=True),
    # pinflow, unpinned shared memory, same consumer
    Arm("shm", "pinflow shared memory (unpinned)"),
    # plain zenoh, payload inside the message, zenoh defaults
    Arm("zbytes", "zenoh bytes (zenoh defaults)", baseline="bytes"),
    # zenoh shared memory; the consumer copies into its own reused pinned buffer, then to the
    # device: the workaround users have today
    Arm("zshm", "zenoh shm + caller-side pinning", baseline="shm"),
    # the shm flow split over two hosts, network namespaces joined by a veth cable (needs root
    # and iproute2): every frame crosses the wire as bytes, what a second machine costs
    Arm("cross", "pinflow across hosts (veth between network namespaces)", cross_host=True),
)}
NAMES = tuple(ARMS)


def unavailable(arm: Arm) -> str | None:
    """Why ``arm`` cannot run on this machine, or None."""
    if not arm.cross_host:
        return None
    from pinflow.tools import netns

    return netns.available()


def default_arms() -> tuple[list[str], dict[str, str]]:
    """Every arm that can run here, and the ones left out with why."""
    chosen, skipped = [], {}
    for arm in ARMS.values():
        reason = unavailable(arm)
        if reason is None:
            chosen.append(arm.name)
        else:
            skipped[arm.name] = reason
    return chosen, skipped
