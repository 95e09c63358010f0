"""A consumer that attacks the other consumer ('victim') of producer/frames from inside the
mesh, as any node of the run could: ATTACK=release forges and replays releases on the
victim's behalf, ATTACK=replay publishes every descriptor again at once and after the next
ones (when the victim has released its slot), ATTACK=eos ends the stream early. Reaches into
its own node's session on purpose: it plays an attacker."""

import collections
import json
import os
import queue
import threading
import time

from report import report

from pinflow import Node

VICTIM = "victim"


def main() -> None:
    node = Node()
    attack = os.environ["ATTACK"]
    session, root = node._session, f"pinflow/{node.run_id}"
    data_key = f"{root}/data/producer/frames"
    victim_release = f"{root}/release/producer/frames/{VICTIM}"
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sent = {"forged": 0}
    seen: collections.deque[bytes] = collections.deque(maxlen=3)
    own_mac = None
    try:  # what a node can sign with its own key; never valid for another consumer
        from pinflow.transport import auth

        own_key = auth.pair_key(node._wiring.consumer_secret, "producer")
        own_mac = lambda key, body: auth.mac(own_key, b"release", key.encode(), body)  # noqa: E731
    except (ImportError, AttributeError):
        pass

    def forge_releases(slot: dict) -> None:
        pairs = [[slot["idx"], slot["gen"]]]
        old = json.dumps({"c": VICTIM, "seg": slot["seg"], "r": pairs}).encode()
        outbox.put((f"{root}/release/producer/frames", old, None))
        new = json.dumps({"seg": slot["seg"], "r": pairs}).encode()
        outbox.put((victim_release, new, None))
        outbox.put((victim_release, new, b"\0" * 16))
        outbox.put((victim_release, old, None))
        if own_mac is not None:
            outbox.put((victim_release, new, own_mac(victim_release, new)))

    def on_data(sample) -> None:
        if sample.attachment is None:
            return
        raw = sample.attachment.to_bytes()
        header = json.loads(raw)
        if header.get("k") != "shm":
            return
        if attack == "release":
            forge_releases(header["d"])
        elif attack == "replay":
            seen.append(raw)
            for old in seen:  # this one twice, the last two again
                outbox.put((data_key, b"", old))
            outbox.put((data_key, b"", raw))
        elif attack == "eos" and sent["forged"] == 0:
            now = time.time_ns()
            for eos in ({"v": 1, "k": "eos", "s": header["s"] + 1, "t": now},
                        {"v": 1, "k": "eos", "s": header["s"] + 1, "t": now,
                         "a": {VICTIM: "00" * 16}}):
                outbox.put((data_key, b"", json.dumps(eos).encode()))

    def on_release(sample) -> None:
        # The victim's own releases, replayed: each names a slot it no longer holds.
        if attack == "release" and sample.attachment is not None:
            body, mac = sample.payload.to_bytes(), sample.attachment.to_bytes()
            for _ in range(3):
                outbox.put((str(sample.key_expr), body, mac))

    def send() -> None:
        while (item := outbox.get()) is not None:
            key, payload, attachment = item
            session.put(key, payload, attachment=attachment)
            sent["forged"] += 1

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    subscribers = [session.declare_subscriber(data_key, on_data),
                   session.declare_subscriber(victim_release, on_release)]
    received = 0
    for event in node:
        if event["type"] == "INPUT":
            received += 1
        del event
    for subscriber in subscribers:
        subscriber.undeclare()
    outbox.put(None)
    sender.join(timeout=5)
    report(node.id, {"forged": sent["forged"], "received": received})


if __name__ == "__main__":
    main()
