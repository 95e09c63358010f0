"""Who may give a slot back, and who may end a stream: keys per (producer, consumer) pair.

zenoh tells a subscriber nothing it can trust about who published a sample (``source_info``
is whatever the sender chose to put there), and every node of a run shares one mesh. So a
release or an end of stream proves where it comes from with a MAC: the launcher gives every
node of its host a random secret, and gives each producer, for each of its consumers, the key
``HMAC(consumer secret, producer id)``. A consumer derives the same key from its own secret.
Releases are signed with the key of the consumer that held the slot, end-of-stream messages
carry one MAC per consumer; another node of the run knows neither key, and MACs seen on the
mesh do not help it forge new ones (each names one segment, slot and generation, or one
stream's end). A same-host link (``transport/links.py``) is proven once, both ways, by the
same key: its first frame carries the producer's MAC over a fresh nonce, the first frame back
the consumer's; everything after that on the connection comes from the process that made the
MAC. What this cannot stop: a process of the same user that reads a node's environment
(``/proc/<pid>/environ``) or writes the shared memory directly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

MAC_BYTES = 16
_PAIR = b"pinflow pair key"


def new_secret() -> str:
    return secrets.token_hex(32)


def pair_key(consumer_secret: str, producer_id: str) -> bytes:
    """The key a consumer shares with one producer (the producer never sees the secret)."""
    return hmac.new(bytes.fromhex(consumer_secret), _PAIR + b"\0" + producer_id.encode(),
                    hashlib.sha256).digest()


def mac(key: bytes, *parts: bytes) -> bytes:
    """MAC of ``parts`` (none may contain NUL except the last, which is the message body)."""
    return hmac.new(key, b"\0".join(parts), hashlib.sha256).digest()[:MAC_BYTES]


def _eos_parts(data_key: str, seq: int) -> tuple[bytes, ...]:
    return b"eos", data_key.encode(), str(seq).encode()


def _held_parts(held_key: str, nonce: str) -> tuple[bytes, ...]:
    return b"held", held_key.encode(), nonce.encode()


def _link_parts(what: bytes, producer: str, output: str, consumer: str,
                nonce: bytes) -> tuple[bytes, ...]:
    """A same-host link's handshake (``transport/links.py``): ``what`` is ``hello`` (the
    producer speaks) or ``welcome`` (the consumer answers), over the producer's nonce."""
    return what, producer.encode(), output.encode(), consumer.encode(), nonce.hex().encode()


class ConsumerKeys:
    """A consumer's side: signs its releases, checks that an end of stream is genuine."""

    def __init__(self, node_id: str, secret: str) -> None:
        self.node_id = node_id
        self._secret = secret
        self._pairs: dict[str, bytes] = {}

    def _key(self, producer: str) -> bytes:
        key = self._pairs.get(producer)
        if key is None:
            key = self._pairs[producer] = pair_key(self._secret, producer)
        return key

    def sign_release(self, producer: str, release_key: str, body: bytes) -> bytes:
        return mac(self._key(producer), b"release", release_key.encode(), body)

    def sign_held(self, producer: str, held_key: str, nonce: str, body: bytes) -> bytes:
        """MAC of an answer to ``producer``'s held-slots query (``nonce`` is the query's)."""
        return mac(self._key(producer), *_held_parts(held_key, nonce), body)

    def hello_is_genuine(self, producer: str, output: str, nonce: bytes, signature: bytes
                         ) -> bool:
        """A link's first frame comes from ``producer`` and is meant for this consumer."""
        expected = mac(self._key(producer), *_link_parts(b"hello", producer, output,
                                                         self.node_id, nonce))
        return hmac.compare_digest(signature, expected)

    def sign_welcome(self, producer: str, output: str, nonce: bytes) -> bytes:
        """This consumer's answer on a link from ``producer`` (over the producer's nonce)."""
        return mac(self._key(producer), *_link_parts(b"welcome", producer, output,
                                                     self.node_id, nonce))

    def eos_is_genuine(self, producer: str, data_key: str, seq: int,
                       macs: dict[str, str]) -> bool:
        """The end of stream carries this consumer's MAC, made with its key for ``producer``."""
        got = macs.get(self.node_id)
        expected = mac(self._key(producer), *_eos_parts(data_key, seq)).hex()
        return isinstance(got, str) and hmac.compare_digest(got, expected)


class ProducerKeys:
    """A producer's side: checks releases against each consumer's key, signs end of stream."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = {consumer: bytes.fromhex(key) for consumer, key in keys.items()}

    def knows(self, consumer: str) -> bool:
        return consumer in self._keys

    def release_is_genuine(self, consumer: str, release_key: str, body: bytes,
                           signature: bytes) -> bool:
        key = self._keys.get(consumer)
        if key is None or len(signature) != MAC_BYTES:
            return False
        return hmac.compare_digest(signature, mac(key, b"release", release_key.encode(), body))

    def held_is_genuine(self, consumer: str, held_key: str, nonce: str, body: bytes,
                        signature: bytes) -> bool:
        """The answer to our held-slots query (with ``nonce``) really comes from
        ``consumer``: a forged or replayed one could make us take back slots it holds."""
        key = self._keys.get(consumer)
        if key is None or len(signature) != MAC_BYTES:
            return False
        return hmac.compare_digest(signature, mac(key, *_held_parts(held_key, nonce), body))

    def sign_hello(self, producer: str, output: str, consumer: str, nonce: bytes) -> bytes:
        """The first frame of a link to ``consumer``: only this producer can make it."""
        return mac(self._keys[consumer], *_link_parts(b"hello", producer, output, consumer,
                                                      nonce))

    def welcome_is_genuine(self, producer: str, output: str, consumer: str, nonce: bytes,
                           signature: bytes) -> bool:
        """The answer on our link really comes from ``consumer``: only then do its releases
        count."""
        key = self._keys.get(consumer)
        if key is None:
            return False
        expected = mac(key, *_link_parts(b"welcome", producer, output, consumer, nonce))
        return hmac.compare_digest(signature, expected)

    def sign_eos(self, data_key: str, seq: int) -> dict[str, str]:
        """One MAC per consumer: each checks its own, none can make another's."""
        parts = _eos_parts(data_key, seq)
        return {consumer: mac(key, *parts).hex() for consumer, key in self._keys.items()}


class Keyring:
    """The launcher's: one secret per node of its host (and the gateway), made per run."""

    def __init__(self, node_ids: Iterable[str]) -> None:
        self._secrets = {node_id: new_secret() for node_id in node_ids}

    def secret(self, node_id: str) -> str:
        return self._secrets[node_id]

    def pair_keys(self, producer: str, consumers: Iterable[str]) -> dict[str, str]:
        """What ``producer`` needs to check its consumers' releases (hex, for the wiring)."""
        return {c: pair_key(self._secrets[c], producer).hex() for c in consumers}

    def consumer(self, node_id: str) -> ConsumerKeys:
        return ConsumerKeys(node_id, self._secrets[node_id])

    def producer(self, producer: str, consumers: Iterable[str]) -> ProducerKeys:
        return ProducerKeys(self.pair_keys(producer, consumers))
