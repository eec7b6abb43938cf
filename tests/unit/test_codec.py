"""Payload encryption (`plumbing.codec`): what leaves a pssync process for Temporal is
ciphertext, any key of the keyring decrypts, the newest encrypts, tampering and unknown keys are
clear errors, and payloads recorded before encryption pass through."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner

from contracts.money import Money
from contracts.settings import SettingsError, load_settings
from contracts.v1.models import Worker
from plumbing.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    Keyring,
    KeyringError,
    PayloadDecryptionError,
    UnknownKeyError,
    data_converter,
    keys_dir,
    load_keyring,
    new_key_id,
    write_new_key,
)

WORKER = Worker(
    source_system="HCM",
    external_id="W-00042",
    name="Ada Lovelace-Byron",
    email="ada.lovelace@example.com",
    hire_date=date(2020, 1, 6),
    cost_center="CC-100",
    cost_rate=Money(Decimal("123.45"), "USD"),
)
SECRETS = (b"Ada Lovelace-Byron", b"ada.lovelace@example.com", b"123.45")


def _key(fill: int) -> bytes:
    return bytes([fill]) * 32


async def test_round_trip_through_the_data_converter_leaves_no_clear_text() -> None:
    converter = data_converter(Keyring({"k1": _key(1)}))
    (payload,) = await converter.encode([WORKER])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID_METADATA] == b"k1"
    assert not any(secret in payload.SerializeToString() for secret in SECRETS)
    (back,) = await converter.decode([payload], [Worker])
    assert back == WORKER


async def test_each_payload_gets_its_own_nonce() -> None:
    codec = EncryptionCodec(Keyring({"k1": _key(1)}))
    (plain,) = pydantic_data_converter.payload_converter.to_payloads([WORKER])
    first, second = await codec.encode([plain, plain])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_rotation_newest_encrypts_and_every_key_decrypts() -> None:
    (plain,) = pydantic_data_converter.payload_converter.to_payloads([WORKER])
    old = EncryptionCodec(Keyring({"2026-01": _key(1)}))
    (sealed_old,) = await old.encode([plain])

    rotated = EncryptionCodec(Keyring({"2026-01": _key(1), "2026-05": _key(2)}))
    assert rotated.keyring.active_key_id == "2026-05"
    (sealed_new,) = await rotated.encode([plain])
    assert sealed_new.metadata[KEY_ID_METADATA] == b"2026-05"
    assert await rotated.decode([sealed_old, sealed_new]) == [plain, plain]

    # an explicit active key wins over the newest (two-phase rotation across hosts)
    pinned = Keyring({"2026-01": _key(1), "2026-05": _key(2)}, active_key_id="2026-01")
    assert pinned.encrypt(plain).metadata[KEY_ID_METADATA] == b"2026-01"


async def test_tampering_is_detected() -> None:
    keyring = Keyring({"a": _key(1), "b": _key(2)}, active_key_id="a")
    (plain,) = pydantic_data_converter.payload_converter.to_payloads([WORKER])
    sealed = keyring.encrypt(plain)

    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        keyring.decrypt(flipped)

    truncated = Payload()
    truncated.CopyFrom(sealed)
    truncated.data = sealed.data[:20]
    with pytest.raises(PayloadDecryptionError, match="truncated"):
        keyring.decrypt(truncated)

    # the key id is bound as associated data: relabelling a payload does not decrypt it, even
    # when the other key's material were the same
    twin = Keyring({"a": _key(1), "b": _key(1)}, active_key_id="a")
    relabelled = Payload()
    relabelled.CopyFrom(twin.encrypt(plain))
    relabelled.metadata[KEY_ID_METADATA] = b"b"
    with pytest.raises(PayloadDecryptionError, match="'b'"):
        twin.decrypt(relabelled)


async def test_an_unknown_key_id_is_a_clear_error() -> None:
    (plain,) = pydantic_data_converter.payload_converter.to_payloads([WORKER])
    sealed = Keyring({"gone": _key(9)}).encrypt(plain)
    codec = EncryptionCodec(Keyring({"k1": _key(1)}))
    with pytest.raises(UnknownKeyError) as err:
        await codec.decode([sealed])
    assert "'gone'" in str(err.value) and "k1" in str(err.value)
    assert base64.b64encode(_key(9)).decode() not in str(err.value)


async def test_unencrypted_payloads_pass_through() -> None:
    """Histories recorded before encryption (tests/replay) still decode."""
    converter = data_converter(Keyring({"k1": _key(1)}))
    plain = pydantic_data_converter.payload_converter.to_payloads([WORKER, None, "text"])
    assert await converter.payload_codec.decode(plain) == plain  # type: ignore[union-attr]
    assert await converter.decode(plain, [Worker, type(None), str]) == [WORKER, None, "text"]


async def test_failure_messages_are_encrypted_too() -> None:
    converter = data_converter(Keyring({"k1": _key(1)}))
    failure = Failure()
    await converter.encode_failure(
        ApplicationError("worker Ada Lovelace-Byron has no HCM record", type="NotFound"), failure
    )
    assert b"Ada Lovelace-Byron" not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    back = await converter.decode_failure(failure)
    assert isinstance(back, ApplicationError)
    assert back.message == "worker Ada Lovelace-Byron has no HCM record"
    assert back.type == "NotFound"


def test_the_dev_profile_writes_a_key_on_first_start(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    keyring = load_keyring(settings)
    assert keyring is not None
    (path,) = keys_dir(settings).glob("*.key")
    assert path.stem == keyring.active_key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(base64.b64decode(path.read_text())) == 32
    # the next start finds it and writes no other
    again = load_keyring(settings)
    assert again is not None and again.key_ids == keyring.key_ids


def test_without_a_key_and_not_dev_there_is_no_start(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    with pytest.raises(KeyringError, match="pssync keys new"):
        load_keyring(settings, create=False)
    assert not (tmp_path / "keys").exists()


def test_production_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSSYNC_PROFILE", "production")
    with pytest.raises(SettingsError, match="PSSYNC_PAYLOADS__KEYS"):
        load_settings()
    monkeypatch.setenv(
        "PSSYNC_PAYLOADS__KEYS", json.dumps({"2026-05": base64.b64encode(_key(3)).decode()})
    )
    with pytest.raises(SettingsError) as err:
        load_settings()  # other production settings are still missing, not the key
    assert "PSSYNC_PAYLOADS__KEYS" not in str(err.value)


def test_keys_from_settings_and_the_directory_together(tmp_path: Path) -> None:
    newer = write_new_key(tmp_path / "keys", now=datetime(2030, 1, 1, tzinfo=UTC))
    settings = load_settings(
        home=tmp_path, payloads={"keys": {"2026-05": base64.b64encode(_key(3)).decode()}}
    )
    keyring = load_keyring(settings)
    assert keyring is not None
    assert keyring.key_ids == sorted(["2026-05", newer])
    assert keyring.active_key_id == newer  # the greatest id

    bad = load_settings(home=tmp_path, payloads={"keys": {"k": "c2hvcnQ="}})
    with pytest.raises(KeyringError, match=r"32 bytes, this one 5") as err:
        load_keyring(bad)
    assert "c2hvcnQ=" not in str(err.value)

    off = load_settings(home=tmp_path, payloads={"encrypt": False})
    assert load_keyring(off) is None
    assert data_converter(None) is pydantic_data_converter


async def test_a_key_written_after_start_decrypts_without_a_restart(tmp_path: Path) -> None:
    """`pssync keys new` on a host whose processes are running: one process restarts and
    encrypts with the new key; the others find it in the directory when they meet it."""
    settings = load_settings(home=tmp_path)
    running = load_keyring(settings)
    assert running is not None
    write_new_key(keys_dir(settings), now=datetime(2099, 1, 1, tzinfo=UTC))
    restarted = load_keyring(settings)
    assert restarted is not None and restarted.active_key_id != running.active_key_id
    (plain,) = pydantic_data_converter.payload_converter.to_payloads([WORKER])
    assert running.decrypt(restarted.encrypt(plain)) == plain


def test_key_ids_sort_by_creation_time() -> None:
    early = new_key_id(datetime(2026, 5, 12, 10, 15, 0, 1, tzinfo=UTC))
    late = new_key_id(datetime(2026, 5, 12, 10, 15, 0, 2, tzinfo=UTC))
    assert early < late
    with pytest.raises(KeyringError, match="invalid payload key id"):
        Keyring({"../etc/passwd": _key(1)})


def test_pssync_keys_new_prints_the_id_never_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import starter

    monkeypatch.setenv("PSSYNC_HOME", str(tmp_path))
    first = CliRunner().invoke(starter.app, ["keys", "new"])
    second = CliRunner().invoke(starter.app, ["keys", "new"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    paths = sorted((tmp_path / "keys").glob("*.key"))
    assert len(paths) == 2
    for path in paths:
        assert path.stem in first.output + second.output
        assert path.read_text().strip() not in first.output + second.output
    keyring = load_keyring(load_settings(home=tmp_path))
    assert keyring is not None and keyring.active_key_id == paths[-1].stem
