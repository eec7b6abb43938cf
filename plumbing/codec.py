"""Payload encryption for Temporal: an AES-256-GCM payload codec, its keyring, and the data
converter every client and worker of pssync uses.

    keyring = load_keyring(settings)               # <home>/keys/*.key and PSSYNC_PAYLOADS__KEYS
    converter = data_converter(keyring)            # pydantic converter + this codec
    client = await Client.connect(..., data_converter=converter)

Every payload pssync hands Temporal (workflow and activity inputs and results, signals, updates,
queries, memos, summaries, failure messages and stack traces) leaves the process encrypted:
`metadata = {"encoding": "binary/encrypted", "encryption-key-id": <id>, "encryption-cipher":
"AES-256-GCM"}`, `data = nonce (12 random bytes) || ciphertext+tag` of the whole original
payload (its metadata too), with the key id bound as associated data (a payload relabelled with
another key id does not decrypt). Search attributes are not payloads the codec sees: they are
indexed in clear and must carry no personal data.

A payload without the `binary/encrypted` encoding passes through `decode` unchanged: histories
recorded before encryption was on (tests/replay) still decode. An encrypted payload whose key id
the keyring does not hold, or whose bytes were altered, is an error naming the key id, never the
key.

Keys: `<key-id>.key` files (base64 of 32 random bytes, mode 0600) in `settings.payloads.keys_dir`
(default `<home>/keys`) and key material in `settings.payloads.keys`. The newest key (the
greatest id: ids from `new_key_id` sort by creation time) encrypts unless
`settings.payloads.active_key_id` names another; every key decrypts. A key id met in a payload
but unknown makes the keyring read the key directory again once (a key `pssync keys new` wrote
after this process started). The dev profile writes a key on first start when there is none;
production refuses to start without one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from contracts.settings import Settings

log = logging.getLogger("pssync.codec")

ENCODING = b"binary/encrypted"
"""The `encoding` metadata of an encrypted payload."""
KEY_ID_METADATA = "encryption-key-id"
CIPHER_METADATA = "encryption-cipher"
CIPHER = b"AES-256-GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_PREFIX = b"pssync-payload-v1|"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Key ids are file names and metadata values: letters, digits, '.', '_', '-' (1-64)."""
KEY_SUFFIX = ".key"


class KeyringError(RuntimeError):
    """The keys are missing or malformed (a configuration problem, found at start-up)."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload could not be decrypted (altered, truncated or relabelled)."""


class UnknownKeyError(PayloadDecryptionError):
    """An encrypted payload names a key id the keyring does not hold."""


def new_key_id(now: datetime | None = None) -> str:
    """A fresh key id that sorts by creation time: `20260512T101500.123456Z-3fa2`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(2)}"


def _check_key_id(key_id: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise KeyringError(
            f"invalid payload key id {key_id!r}: 1-64 letters, digits, '.', '_' or '-'"
        )
    return key_id


def parse_key(text: str, *, where: str) -> bytes:
    """Key material from its base64 text (32 bytes); `where` names it in errors."""
    try:
        material = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where}: not base64") from None
    if len(material) != KEY_BYTES:
        raise KeyringError(f"{where}: a key is {KEY_BYTES} bytes, this one {len(material)}")
    return material


def read_key_dir(directory: Path) -> dict[str, bytes]:
    """Every `<key-id>.key` in `directory` (none if it does not exist)."""
    keys: dict[str, bytes] = {}
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob(f"*{KEY_SUFFIX}")):
        key_id = _check_key_id(path.name[: -len(KEY_SUFFIX)])
        mode = path.stat().st_mode
        if mode & 0o077:
            log.warning("payload key %s is readable by others (mode %o)", path, mode & 0o777)
        keys[key_id] = parse_key(path.read_text(), where=str(path))
    return keys


def write_new_key(directory: Path, *, now: datetime | None = None) -> str:
    """Write a new random key as `<directory>/<key-id>.key` (mode 0600, the directory 0700)
    and return its id. Never overwrites a file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_id = new_key_id(now)
    text = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n"
    fd = os.open(directory / f"{key_id}{KEY_SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return key_id


class Keyring:
    """Keys by id: the active one encrypts, any decrypts.

    `reload` (optional) returns the keys again (the key directory re-read): it runs once when a
    payload names an unknown key id, so a key written after start-up still decrypts."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        active_key_id: str | None = None,
        reload: Callable[[], Mapping[str, bytes]] | None = None,
    ) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        self._keys: dict[str, AESGCM] = {}
        self._add(keys)
        active = active_key_id or max(keys)
        if active not in self._keys:
            raise KeyringError(f"the active payload key {active!r} is not among the keys")
        self._active = active
        self._reload = reload

    def _add(self, keys: Mapping[str, bytes]) -> None:
        for key_id, material in keys.items():
            _check_key_id(key_id)
            if len(material) != KEY_BYTES:
                raise KeyringError(f"payload key {key_id!r} is not {KEY_BYTES} bytes")
            self._keys[key_id] = AESGCM(material)

    @classmethod
    def ephemeral(cls) -> Keyring:
        """One random key held in memory only (tests, throw-away servers)."""
        return cls({new_key_id(): secrets.token_bytes(KEY_BYTES)})

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._keys.get(key_id)
        if aead is None and self._reload is not None:
            self._add({k: v for k, v in self._reload().items() if k not in self._keys})
            aead = self._keys.get(key_id)
        if aead is None:
            raise UnknownKeyError(
                f"payload encrypted with key {key_id!r}, which this process does not hold "
                f"(it holds {', '.join(self.key_ids)}): add that key to the key directory "
                "or to PSSYNC_PAYLOADS__KEYS"
            )
        return aead

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._active
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[key_id].encrypt(nonce, payload.SerializeToString(), _aad(key_id))
        return Payload(
            metadata={
                "encoding": ENCODING,
                KEY_ID_METADATA: key_id.encode(),
                CIPHER_METADATA: CIPHER,
            },
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """The original payload of an encrypted one; any other payload as it is."""
        if not is_encrypted(payload):
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if not raw_id:
            raise PayloadDecryptionError("encrypted payload without an encryption-key-id")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = payload.metadata.get(CIPHER_METADATA, CIPHER)
        if cipher != CIPHER:
            raise PayloadDecryptionError(
                f"payload cipher {cipher.decode(errors='replace')!r} is not AES-256-GCM"
            )
        aead = self._aead(key_id)
        data = payload.data
        if len(data) < NONCE_BYTES + 16:
            raise PayloadDecryptionError(f"encrypted payload (key {key_id!r}) is truncated")
        try:
            plain = aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id))
        except InvalidTag:
            raise PayloadDecryptionError(
                f"encrypted payload (key {key_id!r}) failed authentication: altered, "
                "truncated or encrypted with another key of that id"
            ) from None
        original = Payload()
        original.ParseFromString(plain)
        return original


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


class EncryptionCodec(PayloadCodec):
    """The Temporal payload codec over a `Keyring`."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.keyring.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.keyring.decrypt(p) for p in payloads]


def data_converter(keyring: Keyring | None) -> DataConverter:
    """pssync's data converter: pydantic's, with the encryption codec and failure messages and
    stack traces moved into (encrypted) encoded attributes. `None`: no encryption (the
    pydantic converter as it is)."""
    if keyring is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def keys_dir(settings: Settings) -> Path:
    """Where the key files are: `settings.payloads.keys_dir`, default `<home>/keys`."""
    return settings.payloads.keys_dir or settings.home / "keys"


def load_keyring(settings: Settings, *, create: bool | None = None) -> Keyring | None:
    """The keyring `settings` configure, or None when encryption is off.

    With no key anywhere, `create` (default: the dev profile) writes one into the key directory;
    otherwise that is a `KeyringError`."""
    payloads = settings.payloads
    if not payloads.encrypt:
        return None
    directory = keys_dir(settings)
    configured = {
        key_id: parse_key(secret.get_secret_value(), where=f"PSSYNC_PAYLOADS__KEYS[{key_id}]")
        for key_id, secret in payloads.keys.items()
    }

    def gather() -> dict[str, bytes]:
        found = read_key_dir(directory)
        for key_id, material in configured.items():
            if found.get(key_id, material) != material:
                raise KeyringError(
                    f"payload key {key_id!r} differs between {directory} and PSSYNC_PAYLOADS__KEYS"
                )
            found[key_id] = material
        return found

    keys = gather()
    if not keys:
        if not (settings.profile == "dev" if create is None else create):
            raise KeyringError(
                f"no payload encryption key: set PSSYNC_PAYLOADS__KEYS or write one into "
                f"{directory} with `pssync keys new`"
            )
        key_id = write_new_key(directory)
        log.warning("wrote a new payload encryption key %s into %s", key_id, directory)
        keys = gather()
    return Keyring(keys, active_key_id=payloads.active_key_id, reload=gather)


def converter_for(settings: Settings) -> DataConverter:
    """The data converter for a client or worker built from `settings`."""
    return data_converter(load_keyring(settings))
