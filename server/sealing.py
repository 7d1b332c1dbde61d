"""Sealed states (`--state-key-file`): the server encrypts and authenticates every state it returns,
and accepts only states it sealed. A client keeps them as opaque bytes: it can store, fork and resume
them (on any replica with the same keys), but neither read the cells nor forge or alter a state.

AES-256-GCM, one key per line of the file (64 hex digits): the first seals, any opens, so keys rotate
by adding a new first line, then dropping the old one once the states it sealed have aged out. The
associated data binds a sealed state to the model that made it (its fingerprint), its rows and the
time it was sealed; `--state-max-age-seconds` refuses states older than that. A state replayed
within its age is a fork of the stream, which is allowed: sealing guards integrity and secrecy, not
freshness.

    blob = "LS1" | key id (4) | sealed at, Unix seconds (8) | rows (4) | nonce (12) | ciphertext + tag
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from pathlib import Path

import numpy as np

from lstmserve.codec import LayerArrays

from .errors import FailedPrecondition, InvalidArgument, StartError

_MAGIC = b"LS1"
_HEADER = struct.Struct(">3s4sQI")  # magic, key id, sealed at, rows
_NONCE = 12
_TAG = 16


class StateSeal:
    def __init__(self, key_file: str, max_age_seconds: float = 0.0):
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise StartError("--state-key-file needs the cryptography package (lstmserve[serve])") from None
        try:
            keys = _keys(Path(key_file).read_text())
        except (OSError, ValueError) as exc:
            raise StartError(f"--state-key-file: {exc}") from None
        self._ciphers = {hashlib.sha256(key).digest()[:4]: AESGCM(key) for key in keys}
        self._sealing_id = hashlib.sha256(keys[0]).digest()[:4]
        self.max_age = max_age_seconds

    def seal(self, fingerprint: str, layers: LayerArrays) -> bytes:
        rows = layers[0][0].shape[0]
        header = _HEADER.pack(_MAGIC, self._sealing_id, int(time.time()), rows)
        nonce = os.urandom(_NONCE)
        plain = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for pair in layers for a in pair)
        sealed = self._ciphers[self._sealing_id].encrypt(nonce, plain, header + fingerprint.encode())
        return header + nonce + sealed

    def open(self, fingerprint: str, blob: bytes, hidden_sizes: tuple[int, ...]) -> LayerArrays:
        """The layers of a state this server sealed for the model of `fingerprint`; refused otherwise."""
        from cryptography.exceptions import InvalidTag

        if len(blob) < _HEADER.size + _NONCE + _TAG:
            raise InvalidArgument(f"sealed state of {len(blob)} bytes: too short to be one (truncated?)")
        magic, key_id, sealed_at, rows = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            raise InvalidArgument("sealed state in an unknown format: send back the bytes a response gave")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise FailedPrecondition(
                "state sealed with a key this server does not have (another deployment's, or retired)"
            )
        header, nonce = blob[: _HEADER.size], blob[_HEADER.size : _HEADER.size + _NONCE]
        try:
            plain = cipher.decrypt(nonce, blob[_HEADER.size + _NONCE :], header + fingerprint.encode())
        except InvalidTag:
            raise FailedPrecondition(
                "sealed state does not open for this model: altered, truncated, or sealed for another model"
            ) from None
        age = time.time() - sealed_at
        if self.max_age and age > self.max_age:
            raise FailedPrecondition(
                f"state sealed {age:.0f} s ago; this server takes states up to {self.max_age:g} s old "
                "(--state-max-age-seconds): start the stream again"
            )
        values = np.frombuffer(plain, dtype="<f4")
        layers, at = [], 0
        for size in hidden_sizes:
            c, h = (
                values[at + i * rows * size : at + (i + 1) * rows * size].reshape(rows, size) for i in (0, 1)
            )
            layers.append((c, h))
            at += 2 * rows * size
        if at != values.size:  # sealed by this server, so it cannot differ unless the model did
            raise FailedPrecondition("sealed state does not fit this model's layers")
        return layers


def _keys(text: str) -> list[bytes]:
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        try:
            key = bytes.fromhex(word)
        except ValueError:
            raise ValueError(f"line {number} is not hex") from None
        if len(key) != 32:
            raise ValueError(f"line {number}: a key of {len(key)} bytes; AES-256 keys are 32 (64 hex digits)")
        keys.append(key)
    if not keys:
        raise ValueError("no keys in the file")
    return keys
