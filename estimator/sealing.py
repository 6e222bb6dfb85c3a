"""Sealed ballots: each open-round card is stored only as ciphertext under a key of its round.

The keys live in a key store outside the database (Redis, or files in memory-backed /dev/shm) and
are destroyed at the reveal, so nothing in the database, its logs or its backups can be read back.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

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
#: File systems that hold their files in memory only: a key written there is gone at power-off.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
#: Where a store keeps the random id that names it (see KeyStore.identity); key ids never hold a dot.
IDENTITY_NAME = ".store-id"
# Key ids become file names and Redis keys: nothing that could climb out of a directory.
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KeyStoreError(Exception):
    """The key store cannot be reached; the request should fail with 503, nothing saved."""


class KeyStoreRefused(Exception):
    """The key store is set up in a way that would break the anonymity promise: the app does not start."""


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

    def identity(self) -> str:
        """A random id the store itself holds (made on first ask): instances that get the same one
        share the store. It changes when the store loses everything (a restart without persistence)."""
        ...

    def persistence(self) -> str | None:
        """What would write this store's keys to disk, in words, or None when they live in memory only.
        Raises KeyStoreRefused when the store will not say."""
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
        self._identity = "memory:" + secrets.token_urlsafe(16)

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

    def identity(self) -> str:
        """One per store object: no other process shares it."""
        return self._identity

    def persistence(self) -> str | None:
        """Never on disk."""
        return None


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

    def _set_unless_present(self, name: str, value: bytes | str, ttl: int | None = None) -> bytes:
        """SET NX (EX ttl) then GET in one transaction, so every racer reads the one value that won."""
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(name, value, nx=True, ex=ttl)
            pipe.get(name)
            _, stored = pipe.execute()
        except (redis.RedisError, OSError) as error:
            raise KeyStoreError(f"Redis key store unavailable: {error}") from error
        if stored is None:
            raise KeyStoreError(
                f"{name} expired as soon as it was set: check ttl_seconds and maxmemory-policy"
            )
        return bytes(stored)

    def create(self, key_id: str) -> bytes:
        """Create the key unless it exists; return the stored one."""
        name = self._name(key_id)
        return _check_key(self._set_unless_present(name, os.urandom(KEY_SIZE), self.ttl_seconds), name)

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

    def identity(self) -> str:
        """A random id under the prefix, set by the first to ask and never expiring."""
        stored = self._set_unless_present(self.prefix + IDENTITY_NAME, secrets.token_urlsafe(16))
        return "redis:" + stored.decode(errors="replace")

    def persistence(self) -> str | None:
        """Redis's `save` and `appendonly` settings, when either writes to disk."""
        try:
            save = self._redis.config_get("save").get("save", "")
            appendonly = self._redis.config_get("appendonly").get("appendonly", "no")
        except redis.ResponseError as error:
            raise KeyStoreRefused(
                f"Redis refuses CONFIG GET ({error}), so it cannot be verified that it keeps the ballot "
                'keys in memory only (`save ""` and `appendonly no`)'
            ) from error
        except (redis.RedisError, OSError) as error:
            raise KeyStoreError(f"Redis key store unavailable: {error}") from error
        found = []
        if save:
            found.append(f"save is {save!r}")
        if appendonly == "yes":
            found.append("appendonly is yes")
        return " and ".join(found) + ' (set `save ""` and `appendonly no`)' if found else None

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

    def identity(self) -> str:
        """A random id in a file of the folder, written whole before its name appears."""
        path = os.path.join(self.directory, IDENTITY_NAME)
        try:
            self._ensure_directory()
            while True:
                try:
                    with open(path, "rb") as file:  # noqa: PTH123  # as the keys are read
                        return "shm:" + file.read(64).decode(errors="replace")
                except FileNotFoundError:
                    pass
                fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".new-")
                try:
                    with os.fdopen(fd, "wb") as file:
                        file.write(secrets.token_urlsafe(16).encode())
                    os.link(temporary, path)
                except FileExistsError:
                    continue  # another worker named the folder first: read its id
                finally:
                    os.unlink(temporary)
        except OSError as error:
            raise KeyStoreError(f"Key store {self.directory} unavailable: {error}") from error

    def persistence(self) -> str | None:
        """The file system the folder lies on, when it is not one held in memory (tmpfs, ramfs)."""
        kind = filesystem_of(self.directory)
        if kind is None or kind in MEMORY_FILESYSTEMS:
            return None
        return f"{self.directory} lies on a {kind} file system, not in memory (tmpfs)"

    def check_folder(self) -> None:
        """Refuse a folder that exists but is not this user's own private one: someone else made it,
        or others may read its keys or plant theirs."""
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            return  # made 0700 with the first key
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise KeyStoreRefused(
                f"The ballot key folder {self.directory} is not a private folder of this user (it must be "
                f"a directory owned by uid {os.getuid()} with mode 0700, found uid {info.st_uid}, mode "
                f"{stat.S_IMODE(info.st_mode):04o}): set BALLOT_KEY_STORE_URI to a folder of this user's "
                "own, or leave it unset"
            )


def filesystem_of(path: str) -> str | None:
    """The type of the file system path lies on (the longest mount point above it in /proc/mounts);
    None when that cannot be told."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


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


def default_key_folder(instance_path: str) -> str:
    """The one-machine store's folder (see machine_folder)."""
    return machine_folder(instance_path, "ballot_key_folder", "estimator-keys-")


def machine_folder(instance_path: str, name: str, prefix: str) -> str:
    """A folder private to this machine's workers: made once with an unguessable name (`prefix…`)
    under /dev/shm (the temp dir without one, which is on disk: use Redis for the keys), and
    recorded in the instance folder under `name`.

    A folder someone else could have made first is never used: a recorded folder that is gone (a
    reboot empties /dev/shm) or is not this user's private one is replaced by a new one. Workers
    starting together take a lock, so they all agree on one folder.
    """
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    record = Path(instance_path) / name
    with open(Path(instance_path) / f".{name}.lock", "a") as lock:  # noqa: PTH123  # flock needs the file
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            folder = record.read_text().strip()
        except FileNotFoundError:
            folder = ""
        if folder and _private_folder(folder):
            return folder
        root = SHM_ROOT if os.path.isdir(SHM_ROOT) else tempfile.gettempdir()
        folder = tempfile.mkdtemp(prefix=prefix, dir=root)
        with tempfile.NamedTemporaryFile("w", dir=instance_path, delete=False) as handle:
            handle.write(folder + "\n")
        os.replace(handle.name, record)
        return folder


def _private_folder(path: str) -> bool:
    """Whether path is a directory of this user that nobody else may enter (mode 0700)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    private = not stat.S_IMODE(info.st_mode) & 0o077
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and private


def printable_uri(uri: str) -> str:
    """The store's URI as a log line or a message may show it: without a password."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


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
        """Build the store from BALLOT_KEY_STORE_URI, or the one-machine default when it is unset;
        refuse a named folder that is not this user's private one."""
        uri = app.config.get("BALLOT_KEY_STORE_URI")
        if not uri:
            uri = "shm://" + default_key_folder(app.instance_path)
        store = key_store_from_uri(uri)
        if isinstance(store, SharedMemoryKeyStore):
            store.check_folder()
        app.extensions["ballot_keys"] = store
        app.extensions["ballot_key_store_uri"] = printable_uri(uri)

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
