"""Sealed ballots: each open-round card is stored only as ciphertext under a key of its round.

The keys live in a key store outside the database (Redis, or files in memory-backed /dev/shm) and
are destroyed at the reveal, so nothing in the database, its logs or its backups can be read back.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Collection
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, current_app

from . import outages

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_CARD_CHARS = 8
# Eight characters take at most 32 bytes in UTF-8; one length byte in front, zeros after.
MAX_CARD_BYTES = 4 * MAX_CARD_CHARS
PLAINTEXT_SIZE = 1 + MAX_CARD_BYTES
SEALED_SIZE = NONCE_SIZE + PLAINTEXT_SIZE + TAG_SIZE
# Bumped if the sealed format changes, so an old ciphertext is never read as a new one.
FORMAT_TAG = "estimator-ballot/v1"

SHM_ROOT = "/dev/shm"
# Key ids become file names and Redis keys: nothing that could climb out of a directory.
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KeyStoreError(Exception):
    """The key store cannot be reached; the request should fail with 503, nothing saved."""


@runtime_checkable
class KeyStore(Protocol):
    """Where the keys of open rounds live: never the database."""

    def create(self, key_id: str) -> bytes:
        """Atomically create a random key for key_id unless one exists; return the stored key."""
        ...

    def get(self, key_id: str) -> bytes | None:
        """The key, or None when it was never created, was destroyed or was lost in a restart."""
        ...

    def destroy(self, key_id: str) -> None:
        """Remove the key for good; destroying a missing key does nothing."""
        ...

    def present(self, key_ids: Collection[str]) -> set[str]:
        """Which of these keys the store still holds, in one look."""
        ...


def new_key_id() -> str:
    """A random, URL-safe id of 128 bits for a round's key; not secret."""
    return secrets.token_urlsafe(16)


def _check_key_id(key_id: str) -> str:
    """Refuse key ids that are not plain URL-safe tokens."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"Not a ballot key id: {key_id!r}")
    return key_id


def _check_key(value: bytes, where: str) -> bytes:
    """A stored key, or KeyStoreError when the store holds something else under its name."""
    if len(value) != KEY_SIZE:
        raise KeyStoreError(f"{where} holds {len(value)} bytes, not a {KEY_SIZE}-byte key")
    return value


class MemoryKeyStore:
    """Keys in a dict of this process: for unit tests only, as workers do not share it."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def create(self, key_id: str) -> bytes:
        """Create the key unless it exists; return the stored one."""
        with self._lock:
            return self._keys.setdefault(_check_key_id(key_id), os.urandom(KEY_SIZE))

    def get(self, key_id: str) -> bytes | None:
        """The key, or None."""
        with self._lock:
            return self._keys.get(_check_key_id(key_id))

    def destroy(self, key_id: str) -> None:
        """Forget the key."""
        with self._lock:
            self._keys.pop(_check_key_id(key_id), None)

    def present(self, key_ids: Collection[str]) -> set[str]:
        """The ids among key_ids that have a key."""
        with self._lock:
            return {key_id for key_id in key_ids if _check_key_id(key_id) in self._keys}


class RedisKeyStore:
    """Keys in Redis, shared by every worker on every machine; they expire after ttl_seconds."""

    def __init__(
        self,
        url: str,
        prefix: str = "estimator:ballot-key:",
        ttl_seconds: int = 30 * 24 * 3600,
        *,
        timeout_seconds: float = outages.REDIS_TIMEOUT,
    ) -> None:
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        # Short timeouts, a single immediate retry for a connection the server closed, and none
        # for a Redis that does not answer: a vote fails fast with 503 rather than hang while
        # Redis is frozen, and the calls after it fail at once until it answers again (outages.py).
        self._redis = redis.Redis.from_url(
            url, **outages.redis_options("Ballot key store", url, timeout_seconds)
        )

    def _name(self, key_id: str) -> str:
        """The Redis key that holds key_id's key."""
        return self.prefix + _check_key_id(key_id)

    def create(self, key_id: str) -> bytes:
        """SET NX EX then GET in one transaction, so every racer reads the one key that won."""
        name = self._name(key_id)
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(name, os.urandom(KEY_SIZE), nx=True, ex=self.ttl_seconds)
            pipe.get(name)
            _, stored = pipe.execute()
        except (redis.RedisError, OSError) as error:
            raise KeyStoreError(f"Redis key store unavailable: {error}") from error
        if stored is None:
            raise KeyStoreError(f"{name} expired as soon as it was created: check ttl_seconds")
        return _check_key(bytes(stored), name)

    def get(self, key_id: str) -> bytes | None:
        """The key, or None when Redis does not have it."""
        name = self._name(key_id)
        try:
            stored = self._redis.get(name)
        except (redis.RedisError, OSError) as error:
            raise KeyStoreError(f"Redis key store unavailable: {error}") from error
        return None if stored is None else _check_key(bytes(stored), name)  # type: ignore[arg-type]  # redis-py types GET loosely; without decode_responses it is bytes

    def destroy(self, key_id: str) -> None:
        """DEL the key."""
        try:
            self._redis.delete(self._name(key_id))
        except (redis.RedisError, OSError) as error:
            raise KeyStoreError(f"Redis key store unavailable: {error}") from error

    def present(self, key_ids: Collection[str]) -> set[str]:
        """EXISTS for every id, in one round trip."""
        ids = list(key_ids)
        if not ids:
            return set()
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key_id in ids:
                pipe.exists(self._name(key_id))
            found = pipe.execute()
        except (redis.RedisError, OSError) as error:
            raise KeyStoreError(f"Redis key store unavailable: {error}") from error
        return {key_id for key_id, exists in zip(ids, found, strict=True) if exists}

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()


class SharedMemoryKeyStore:
    """One file per key in a memory-backed directory, shared by the workers of one machine."""

    def __init__(self, directory: str) -> None:
        # Nothing is touched until the first key is created, so building an app writes nothing.
        self.directory = directory

    def _path(self, key_id: str) -> str:
        """The file that holds key_id's key."""
        return os.path.join(self.directory, _check_key_id(key_id))

    def _ensure_directory(self) -> None:
        """Create the directory 0700 if needed; refuse one another user could read or plant keys in."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise KeyStoreError(f"{self.directory} is not a directory of this user")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    def _read(self, path: str) -> bytes:
        """The key in path; FileNotFoundError when there is none."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as file:
            return _check_key(file.read(KEY_SIZE + 1), path)

    def create(self, key_id: str) -> bytes:
        """Write a fresh key to a temporary file and hard-link it in place: the first link wins."""
        path = self._path(key_id)
        try:
            self._ensure_directory()
            while True:
                try:
                    return self._read(path)
                except FileNotFoundError:
                    pass
                key = os.urandom(KEY_SIZE)
                # mkstemp makes the file 0600; the key is complete before its name appears, so a
                # racing worker never reads half a key. Temporary names start with "." and key ids
                # cannot, so they never collide.
                fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".new-")
                try:
                    with os.fdopen(fd, "wb") as file:
                        file.write(key)
                    os.link(temporary, path)
                    return key
                except FileExistsError:
                    continue  # another worker won the race: read its key
                finally:
                    os.unlink(temporary)
        except OSError as error:
            raise KeyStoreError(f"Key store {self.directory} unavailable: {error}") from error

    def get(self, key_id: str) -> bytes | None:
        """The key, or None when its file does not exist."""
        path = self._path(key_id)
        try:
            return self._read(path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise KeyStoreError(f"Key store {self.directory} unavailable: {error}") from error

    def destroy(self, key_id: str) -> None:
        """Overwrite the key with zeros, then unlink it."""
        path = self._path(key_id)
        try:
            # Overwriting the inode also blanks a temporary link a crashed worker may have left.
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "wb") as file:
                file.write(bytes(max(KEY_SIZE, os.fstat(file.fileno()).st_size)))
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as error:
            raise KeyStoreError(f"Key store {self.directory} unavailable: {error}") from error

    def present(self, key_ids: Collection[str]) -> set[str]:
        """The ids whose key file exists."""
        return {key_id for key_id in key_ids if os.path.lexists(self._path(key_id))}


def key_store_from_uri(uri: str) -> KeyStore:
    """Build the store a URI names: redis://, rediss://, unix://, shm:///abs/dir or memory://."""
    parts = urlsplit(uri or "")
    scheme = parts.scheme.lower()
    if scheme in {"redis", "rediss", "unix"}:
        return RedisKeyStore(uri)
    if scheme == "shm":
        directory = parts.path
        if parts.netloc or parts.query or parts.fragment or not directory.startswith("/"):
            raise ValueError(f"Ballot key store {uri!r}: write shm:///absolute/directory")
        if os.path.normpath(directory) == "/":
            raise ValueError(f"Ballot key store {uri!r}: name a directory of its own, not /")
        return SharedMemoryKeyStore(os.path.normpath(directory))
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query or parts.fragment:
            raise ValueError(f"Ballot key store {uri!r}: write memory:// with nothing after it")
        return MemoryKeyStore()
    raise ValueError(
        f"Ballot key store {uri!r} is not understood: use redis://, rediss://, unix://, "
        "shm:///absolute/directory or memory://"
    )


def default_key_store_uri(instance_path: str, database_uri: str) -> str:
    """The one-machine store under /dev/shm, or the temp dir (on disk: use Redis) without one."""
    # One directory per app and database: all workers of one app share keys, two apps never do.
    digest = hashlib.sha256(f"{instance_path}\0{database_uri}".encode()).hexdigest()[:16]
    root = SHM_ROOT if os.path.isdir(SHM_ROOT) else tempfile.gettempdir()
    return "shm://" + os.path.join(root, f"estimator-{digest}")


def _associated_data(round_id: int, user_id: int, key_id: str) -> bytes:
    """The ballot's identity, bound to its ciphertext so it cannot be moved to another voter or round."""
    # The ids are whole numbers and key_id comes last, so no two identities give the same bytes.
    return f"{FORMAT_TAG}\n{int(round_id)}\n{int(user_id)}\n{key_id}".encode()


def seal(key: bytes, card: str, *, round_id: int, user_id: int, key_id: str) -> bytes:
    """Encrypt a card with AES-256-GCM into exactly SEALED_SIZE bytes (nonce + ciphertext)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"A ballot key has {KEY_SIZE} bytes, not {len(key)}")
    data = card.encode()
    if not card or len(card) > MAX_CARD_CHARS or len(data) > MAX_CARD_BYTES:
        raise ValueError(f"A card has 1 to {MAX_CARD_CHARS} characters")
    # Padded to a fixed length so the ciphertext's size says nothing about the card.
    plaintext = bytes([len(data)]) + data.ljust(MAX_CARD_BYTES, b"\0")
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _associated_data(round_id, user_id, key_id))


def unseal(key: bytes, sealed: bytes, *, round_id: int, user_id: int, key_id: str) -> str | None:
    """The card, or None when it cannot be read: wrong key, tampered, another identity, wrong size."""
    sealed = bytes(sealed)  # drivers may hand back a memoryview
    if len(key) != KEY_SIZE or len(sealed) != SEALED_SIZE:
        return None
    nonce, ciphertext = sealed[:NONCE_SIZE], sealed[NONCE_SIZE:]
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(round_id, user_id, key_id))
    except InvalidTag:
        return None
    length, padded = plaintext[0], plaintext[1:]
    if length == 0 or length > MAX_CARD_BYTES or any(padded[length:]):
        return None
    try:
        return padded[:length].decode()
    except UnicodeDecodeError:
        return None


class BallotKeys:
    """Holds the app's key store, as an extension: `ballot_keys.init_app(app)`, then `.store`."""

    def init_app(self, app: Flask) -> None:
        """Build the store from BALLOT_KEY_STORE_URI, or the one-machine default when it is unset."""
        uri = app.config.get("BALLOT_KEY_STORE_URI") or default_key_store_uri(
            app.instance_path, str(app.config.get("SQLALCHEMY_DATABASE_URI") or "")
        )
        app.extensions["ballot_keys"] = key_store_from_uri(uri)

    @property
    def store(self) -> KeyStore:
        """The current app's key store."""
        store = current_app.extensions.get("ballot_keys")
        if store is None:
            raise RuntimeError("ballot_keys.init_app(app) was not called for this app")
        return store  # type: ignore[no-any-return]  # Flask types extensions as dict[str, Any]

    def fingerprint(self, key_ids: Collection[str], store: KeyStore | None = None) -> str:
        """A short name for which of these open rounds' keys the store still holds.

        Live pages' ETags include it: a key lost with its store (a restart, an eviction) makes
        those ballots unreadable without any change in the database, and pages already open must
        learn at once that their voters have to vote again.
        """
        if not key_ids:
            return "none"
        try:
            alive = (store or self.store).present(key_ids)
        except KeyStoreError:
            return "unreachable"
        return hashlib.sha256(" ".join(sorted(alive)).encode()).hexdigest()[:12]


ballot_keys = BallotKeys()
