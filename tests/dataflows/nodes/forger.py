"""A consumer that attacks the other consumer ('victim') of producer/frames from inside the
run, as any node of the run could. ATTACK=release forges releases of the slots it was lent
too (they are lent to the victim as well) on the victim's behalf, where releases over the
mesh arrive; ATTACK=replay opens links to the victim and replays what the producer sent on
its own link (the producer's genuine Hello for this node included), at once and after the
next frames; ATTACK=eos opens a link to the victim claiming to be the producer and ends the
stream early. Reaches into pinflow's internals on purpose: it plays an attacker."""

import os
import queue
import socket
import threading

from report import report

from pinflow import Node
from pinflow.protocol import frames
from pinflow.transport import auth, links, receiver

VICTIM = "victim"
captured: queue.SimpleQueue = queue.SimpleQueue()
"""What this node's own links brought: raw (header, payload) frames, Hello first."""


def _spy_on_links() -> None:
    received = links.Link.receive

    def spying(self: links.Link) -> list:
        got = received(self)
        for _, header, payload in got:
            if header is not None:
                captured.put(("frame", header, payload))
        return got

    links.Link.receive = spying
    read_slot = receiver.SlotReceiver.read_slot

    def reading(self, producer, ref, give_back, **kwargs):
        captured.put(("slot", ref.segment, ref.index, ref.generation))
        return read_slot(self, producer, ref, give_back, **kwargs)

    receiver.SlotReceiver.read_slot = reading


def main() -> None:
    _spy_on_links()
    node = Node()
    attack = os.environ["ATTACK"]
    session, root = node._session, f"pinflow/{node.run_id}"
    victim_release = f"{root}/release/producer/frames/{VICTIM}"
    victim_link = links.link_path(node.run_id, VICTIM)
    own_key = auth.pair_key(node._wiring.consumer_secret, "producer")
    sent = {"forged": 0}
    stop = threading.Event()

    def to_victim(*headers: bytes) -> None:
        """One connection to the victim's link socket carrying ``headers`` as frames."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(victim_link))
            for number, header in enumerate(headers):
                sock.sendall(frames.PREFIX.pack(len(header), 0, number) + header)
                sent["forged"] += 1
        except OSError:
            pass  # the victim hung up on us, as it should
        finally:
            sock.close()

    def forged_hello() -> bytes:
        nonce = os.urandom(frames.NONCE_BYTES)
        mac = auth.mac(own_key, b"hello", b"producer", b"frames", VICTIM.encode(),
                       nonce.hex().encode())
        return frames.encode(frames.Hello(frames.VERSION, "producer", "frames", VICTIM,
                                          nonce, mac))

    def attack_loop() -> None:
        hello_for_me, seen = None, []
        while not stop.is_set():
            try:
                item = captured.get(timeout=0.1)
            except queue.Empty:
                continue
            if attack == "release" and item[0] == "slot":
                _, segment, index, generation = item
                body = frames.encode(frames.Release(segment, [(index, generation)]))
                zbody = f'{{"seg":"{segment}","r":[[{index},{generation}]]}}'.encode()
                own = auth.mac(own_key, b"release", victim_release.encode(), zbody)
                for payload, attachment in ((zbody, None), (zbody, b"\0" * 16), (zbody, own),
                                            (body, own)):
                    session.put(victim_release, payload, attachment=attachment)
                    sent["forged"] += 1
            elif attack == "replay" and item[0] == "frame":
                header = item[1]
                if hello_for_me is None:
                    hello_for_me = header  # the producer's genuine Hello, made for this node
                    continue
                seen.append(header)
                to_victim(hello_for_me, *seen[-3:])   # a genuine Hello, not for the victim
                to_victim(forged_hello(), header)    # signed with this node's own key
                to_victim(header)                    # no Hello at all
            elif attack == "eos" and sent["forged"] == 0 and item[0] == "slot":
                to_victim(forged_hello(), frames.encode(frames.End(10**6)))
                to_victim(frames.encode(frames.End(10**6)))

    attacker = threading.Thread(target=attack_loop, daemon=True)
    attacker.start()
    received = 0
    for event in node:
        if event["type"] == "INPUT":
            received += 1
        del event
    stop.set()
    attacker.join(timeout=5)
    report(node.id, {"forged": sent["forged"], "received": received})


if __name__ == "__main__":
    main()
