"""The benchmark's arms, declared once: name, label and what each runs. ``pinflow bench
--arms`` takes its choices from here.

Same frames, same consumer work in every arm, one run; ratios matter, machines are noisy.
The CLI imports this module to build its parser, for every command: keep it free of heavy
imports (:mod:`~pinflow.tools.netns` is imported when an arm's availability is asked).
"""

from __future__ import annotations

from dataclasses import dataclass

from pinflow.errors import PinflowError


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    """The arm's row in the table and its ``label`` in the JSON report."""
    baseline: str | None = None
    """None: a pinflow dataflow; else the ``--mode`` of :mod:`pinflow.tools.baselines`."""
    how: str = "loan"
    """pinflow arms: how the sender hands a frame over (:data:`~.sender.HOWS`)."""
    pinned: bool = False
    """pinflow arms: a ``pinned: true`` pool, loaned with ``pinned=True``."""
    cross_host: bool = False
    """Producer and consumer in two network namespaces joined by a veth cable."""


FLOOR = "floor"
"""The arm every p50 is divided by."""
SWEEP = ("floor", "copy", "inplace")
"""The arms ``--sizes`` measures at each size."""

ARMS: dict[str, Arm] = {arm.name: arm for arm in (
    # one memcpy of the frame in one process, then one byte read per page: the floor
    Arm(FLOOR, "one memcpy of the frame in one process (the floor)", baseline="memcpy"),
    # pinflow, pinned=True loan with one copy into it, device delivery (`device: cuda`)
    Arm("pinned", "pinflow pinned (loan + one copy, device delivery)", pinned=True),
    # pinflow, the same loan into an unpinned pool, same consumer
    Arm("shm", "pinflow shared memory (loan + one copy, unpinned)"),
    # pinflow, send_output: one copy into a slot, the API most nodes use
    Arm("copy", "pinflow send_output (one copy in)", how="copy"),
    # pinflow, a loan of which only the 16-byte stamp is written: the per-message overhead
    Arm("inplace", "pinflow loan written in place (16 bytes)", how="inplace"),
    # plain zenoh, payload inside the message, zenoh defaults
    Arm("zbytes", "zenoh bytes (zenoh defaults)", baseline="bytes"),
    # zenoh shared memory; the consumer copies into its own reused pinned buffer, then to the
    # device: the workaround users have today
    Arm("zshm", "zenoh shm + caller-side pinning", baseline="shm"),
    # iceoryx2 publish-subscribe: a loaned slice, one copy in, an event wakes the consumer;
    # optional (`pinflow[bench]`): the one-copy reference of issue 16
    Arm("iox2", "iceoryx2 0.10 loan_slice_uninit + one copy in", baseline="iox2"),
    # two bare Python processes: a shared-memory ring, 16 bytes on a unix socket, one copy
    # in, no checks: about what a Python node pays per frame here before any work of its own
    Arm("bare", "bare Python pair: shm ring + unix socket, one copy in", baseline="bare"),
    # plain zenoh bytes over TCP between the cross arm's namespaces, the wire's zenoh config:
    # what the cross arm is measured against
    Arm("ztcp", "zenoh bytes over TCP (veth, the wire's config)", baseline="tcp",
        cross_host=True),
    # the copy flow split over two hosts, network namespaces joined by a veth cable (needs
    # root and iproute2): every frame crosses the wire as bytes, what a second machine costs
    Arm("cross", "pinflow across hosts (veth between network namespaces)", how="copy",
        cross_host=True),
)}
NAMES = tuple(ARMS)


def unavailable(arm: Arm) -> str | None:
    """Why ``arm`` cannot run on this machine (network namespaces for the two that cross a
    veth, the iceoryx2 package for iox2), or None."""
    if arm.baseline == "iox2":
        from pinflow.tools.bench import iox2

        return iox2.unavailable()
    if not arm.cross_host:
        return None
    from pinflow.tools import netns

    return netns.available()


def require_packages(names: list[str]) -> None:
    """Refuse, before anything is measured, an arm asked for whose optional package is
    missing (iox2 without iceoryx2). The cross-host arms are not refused: they report why in
    their row."""
    for name in names:
        arm = ARMS[name]
        if not arm.cross_host and (reason := unavailable(arm)) is not None:
            raise PinflowError(f"the {name} arm cannot run: {reason}")


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
