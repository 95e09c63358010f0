"""Per (producer, consumer) keys: a consumer's releases and a producer's end of stream are
believed only with the right MAC."""

from __future__ import annotations

from pinflow.transport import auth


def test_only_the_consumer_s_own_key_signs_its_releases_and_its_end_of_stream() -> None:
    keyring = auth.Keyring(["victim", "forger"])
    producer = keyring.producer("cam", ["victim", "forger"])
    victim, forger = keyring.consumer("victim"), keyring.consumer("forger")
    key, body = "pinflow/r/release/cam/out/victim", b'{"seg":"s","r":[[0,1]]}'
    assert producer.release_is_genuine("victim", key, body, victim.sign_release("cam", key, body))
    assert not producer.release_is_genuine("victim", key, body,
                                           forger.sign_release("cam", key, body))
    assert not producer.release_is_genuine("victim", key, b'{"seg":"s","r":[[1,1]]}',
                                           victim.sign_release("cam", key, body))
    assert not producer.release_is_genuine("nobody", key, body, b"\0" * auth.MAC_BYTES)
    # A key shared with another producer signs nothing for this one.
    assert not producer.release_is_genuine("victim", key, body,
                                           victim.sign_release("mic", key, body))
    macs = producer.sign_eos("pinflow/r/data/cam/out", 7)
    assert victim.eos_is_genuine("cam", "pinflow/r/data/cam/out", 7, macs)
    assert not victim.eos_is_genuine("cam", "pinflow/r/data/cam/out", 8, macs)
    assert not victim.eos_is_genuine("cam", "pinflow/r/data/cam/out", 7,
                                     {"victim": macs["forger"]})
