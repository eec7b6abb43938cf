"""The payload key of the replay histories recorded with encryption on (test material only:
never a key of a real deployment). `record_histories` encrypts with it, as production clients
encrypt with theirs; `test_replay` decrypts with it. Histories recorded before encryption carry
plain payloads, which the codec passes through."""

from __future__ import annotations

from plumbing.codec import Keyring, parse_key

REPLAY_KEYS: dict[str, str] = {"replay-test-only": "7zc4RWH092aM1Mog5OPwDtrZspUV7z5YLdraKCeBLhQ="}


def replay_keyring() -> Keyring:
    return Keyring({key_id: parse_key(text, where=key_id) for key_id, text in REPLAY_KEYS.items()})
