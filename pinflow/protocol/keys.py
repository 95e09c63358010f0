"""Key expressions of one run. Every key starts with ``pinflow/<run_id>/`` so that two
dataflows on one machine never match each other's subscriptions, even if linked."""

from __future__ import annotations

from pinflow.spec.units import check_id


def _check(part: str) -> str:
    return check_id("key part", part)


class RunKeys:
    """Builds the key expressions of run ``run_id``."""

    def __init__(self, run_id: str) -> None:
        self.run_id = _check(run_id)
        self.root = f"pinflow/{run_id}"

    def data(self, node_id: str, output_id: str) -> str:
        """Messages (inline payloads or slot descriptors) of one output."""
        return f"{self.root}/data/{_check(node_id)}/{_check(output_id)}"

    def release(self, node_id: str, output_id: str, consumer_id: str) -> str:
        """Slot releases one consumer sends back to the producer of one output. The key
        names the consumer; the producer believes it only with the consumer's MAC."""
        return f"{self.root}/release/{_check(node_id)}/{_check(output_id)}/{_check(consumer_id)}"

    def release_all(self, node_id: str, output_id: str) -> str:
        """Every consumer's releases for one output (the producer subscribes here)."""
        return f"{self.root}/release/{_check(node_id)}/{_check(output_id)}/*"

    def alive(self, node_id: str) -> str:
        """Liveliness token a node holds while its process lives."""
        return f"{self.root}/alive/{_check(node_id)}"

    def alive_all(self) -> str:
        return f"{self.root}/alive/*"

    def ready(self, node_id: str) -> str:
        """Liveliness token a node declares once its subscriptions and links are in place."""
        return f"{self.root}/ready/{_check(node_id)}"

    def ready_all(self) -> str:
        return f"{self.root}/ready/*"

    def launcher(self) -> str:
        """Liveliness token of the launcher; nodes stop when it disappears."""
        return f"{self.root}/launcher"

    def state(self, state: str) -> str:
        """Run-wide state tokens declared by the launcher: ``running`` then ``stop``."""
        return f"{self.root}/state/{_check(state)}"

    def state_all(self) -> str:
        return f"{self.root}/state/*"

    def stats(self, node_id: str) -> str:
        """Periodic statistics a node publishes."""
        return f"{self.root}/stats/{_check(node_id)}"

    def stats_all(self) -> str:
        return f"{self.root}/stats/*"

    def held(self, node_id: str) -> str:
        """Queryable of a consumer: the slots it still holds (asked after a lost link)."""
        return f"{self.root}/held/{_check(node_id)}"

    def gone(self, node_id: str) -> str:
        """Declared by the launcher when a node exited and will not be restarted."""
        return f"{self.root}/gone/{_check(node_id)}"

    def gone_all(self) -> str:
        return f"{self.root}/gone/*"


def last_part(key: str) -> str:
    """Final component of a key expression (the node id of an alive/ready token)."""
    return str(key).rsplit("/", 1)[-1]
