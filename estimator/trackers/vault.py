"""Tracker credentials, encrypted at rest under TRACKER_SECRET_KEY.

The key lives in the environment, never in the database or the code: a copy of the database
alone opens no tracker. AES-256-GCM with the group's id as associated data, so that a sealed
credential copied into another group's row does not open there. TRACKER_SECRET_KEY may hold
several keys, comma-separated, while one is being replaced: the first seals, every one opens.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from flask_babel import gettext as _

from .base import TrackerError

#: What a sealed credential starts with: the format, should it ever change.
VERSION = b"\x01"
NONCE_BYTES = 12


class VaultClosed(TrackerError):
    """TRACKER_SECRET_KEY is missing or not a key: no credential can be sealed or opened."""


def keys() -> list[bytes]:
    """The keys in TRACKER_SECRET_KEY, the sealing one first; VaultClosed saying what to set."""
    setting = str(current_app.config.get("TRACKER_SECRET_KEY") or "").strip()
    if not setting:
        raise VaultClosed(
            _(
                "Trackers cannot be connected on this server yet: its operator must set "
                "TRACKER_SECRET_KEY, the key that encrypts tracker credentials."
            )
        )
    found = []
    for text in setting.split(","):
        try:
            key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise VaultClosed(
                _(
                    "Trackers cannot be used on this server: TRACKER_SECRET_KEY must be 32 random bytes "
                    "in base64 (its operator can make one with “openssl rand -base64 32”)."
                )
            )
        found.append(key)
    return found


def ready() -> str | None:
    """None when credentials can be sealed, else what the operator must do."""
    try:
        keys()
    except VaultClosed as error:
        return str(error)
    return None


def _context(group_id: int) -> bytes:
    return f"estimator tracker credentials of group {group_id}".encode()


def seal(group_id: int, secret: dict[str, str]) -> bytes:
    """The credentials encrypted for the group's connection row."""
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(secret, separators=(",", ":")).encode()
    return VERSION + nonce + AESGCM(keys()[0]).encrypt(nonce, plain, _context(group_id))


def unseal(group_id: int, sealed: bytes) -> dict[str, str]:
    """The credentials of the group's connection; VaultClosed when no key in the environment opens them."""
    found = keys()
    if sealed[:1] == VERSION:
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        for key in found:
            try:
                plain = AESGCM(key).decrypt(nonce, body, _context(group_id))
            except InvalidTag:
                continue
            secret = json.loads(plain)
            return {str(name): str(value) for name, value in secret.items()}
    raise VaultClosed(
        _(
            "The tracker's saved credentials cannot be read with this server's TRACKER_SECRET_KEY "
            "(was it replaced?): enter the credentials again."
        )
    )
