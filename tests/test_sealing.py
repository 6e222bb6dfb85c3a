"""Sealed ballots: the cipher, the key stores and the choice of store."""

import hashlib
import multiprocessing
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

import pytest
import redis
from flask import Flask

from estimator.estimates import DECKS, RANGE_MAX, RANGE_MIN, UNSURE
from estimator.sealing import (
    SEALED_SIZE,
    BallotKeys,
    KeyStore,
    KeyStoreError,
    KeyStoreRefused,
    MemoryKeyStore,
    RedisKeyStore,
    SharedMemoryKeyStore,
    key_store_from_uri,
    new_key_id,
    seal,
    unseal,
)
from tests.helpers import redis_answers, start_redis, stop_redis
from tests.server import free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"
KEY = bytes(range(32))


class Identity(TypedDict):
    """Whose ballot, in which round, under which key."""

    round_id: int
    user_id: int
    key_id: str


IDENTITY: Identity = {"round_id": 7, "user_id": 42, "key_id": "round-key-id"}


def every_card() -> list[str]:
    """Every card of every deck, the range deck's 1–100 included, and the unsure card."""
    cards = {str(n) for n in range(RANGE_MIN, RANGE_MAX + 1)} | {UNSURE}
    for deck in DECKS.values():
        cards.update(deck.cards)
    return sorted(cards)


# --- the cipher -------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [*every_card(), "ÄÖÜßäöüé", "🂡🂱🃁🃑🂢🂲🃂🃒", "x"])
def test_every_card_seals_to_the_same_size_and_opens_again(card):
    sealed = seal(KEY, card, **IDENTITY)
    assert len(sealed) == SEALED_SIZE
    assert unseal(KEY, sealed, **IDENTITY) == card


def test_the_deck_cards_are_all_covered():
    cards = every_card()
    assert {"½", "XS", "XXL", "89", "100", "?"} <= set(cards)
    assert len({len(seal(KEY, card, **IDENTITY)) for card in cards}) == 1


@pytest.mark.parametrize("card", ["", "123456789", "ÄÖÜßäöüéx"])
def test_a_card_that_is_empty_or_too_long_is_refused(card):
    with pytest.raises(ValueError, match="1 to 8 characters"):
        seal(KEY, card, **IDENTITY)


def test_a_key_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        seal(KEY[:16], "5", **IDENTITY)
    assert unseal(KEY[:16], seal(KEY, "5", **IDENTITY), **IDENTITY) is None


def test_two_seals_of_one_card_differ():
    first, second = seal(KEY, "8", **IDENTITY), seal(KEY, "8", **IDENTITY)
    assert first != second
    assert first[:12] != second[:12]  # a fresh nonce each time


@pytest.mark.parametrize(
    "moved",
    [
        {"user_id": 43},
        {"round_id": 8},
        {"key_id": "another-key-id"},
        {"round_id": 42, "user_id": 7},  # the two ids swapped
    ],
)
def test_a_ballot_moved_to_another_identity_cannot_be_read(moved):
    sealed = seal(KEY, "13", **IDENTITY)
    assert unseal(KEY, sealed, **{**IDENTITY, **moved}) is None


@pytest.mark.parametrize("bit", [0, 8 * 12, 8 * 20 + 3, 8 * SEALED_SIZE - 1])
def test_a_ballot_with_one_bit_flipped_cannot_be_read(bit):
    sealed = bytearray(seal(KEY, "13", **IDENTITY))
    sealed[bit // 8] ^= 1 << (bit % 8)
    assert unseal(KEY, bytes(sealed), **IDENTITY) is None


def test_a_ballot_opened_with_another_key_cannot_be_read():
    sealed = seal(KEY, "13", **IDENTITY)
    assert unseal(os.urandom(32), sealed, **IDENTITY) is None


@pytest.mark.parametrize("size", [0, SEALED_SIZE - 1, SEALED_SIZE + 1])
def test_a_ballot_of_the_wrong_size_cannot_be_read(size):
    sealed = seal(KEY, "13", **IDENTITY)
    assert unseal(KEY, (sealed * 2)[:size], **IDENTITY) is None


def test_a_ballot_handed_back_as_a_memoryview_opens():
    sealed = seal(KEY, "XL", **IDENTITY)
    assert unseal(KEY, memoryview(sealed), **IDENTITY) == "XL"  # type: ignore[arg-type]  # as drivers may


def test_key_ids_are_random_url_safe_and_long_enough():
    ids = {new_key_id() for _ in range(100)}
    assert len(ids) == 100
    for key_id in ids:
        assert len(key_id) >= 22  # 128 bits in URL-safe base64
        assert set(key_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- the stores, each held to the same contract -------------------------------------------------


def check_store_contract(store: KeyStore) -> None:
    """What every store promises: idempotent create, None after destroy, idempotent destroy."""
    key_id = new_key_id()
    assert store.get(key_id) is None
    key = store.create(key_id)
    assert len(key) == 32
    assert store.create(key_id) == key  # a second create keeps the first key
    assert store.get(key_id) == key
    other_id = new_key_id()
    other = store.create(other_id)
    assert other != key
    never = new_key_id()
    assert store.present({key_id, other_id, never}) == {key_id, other_id}
    assert store.present(set()) == set()
    store.destroy(key_id)
    assert store.get(key_id) is None
    assert store.present({key_id, other_id}) == {other_id}
    store.destroy(key_id)  # again: nothing happens
    store.destroy(new_key_id())  # never created: nothing happens
    assert store.get(key_id) is None


@pytest.mark.parametrize("key_id", ["", "../escape", "a/b", ".hidden", "x" * 65, "spa ce", "ü"])
def test_every_store_refuses_a_key_id_that_is_not_a_plain_token(tmp_path, key_id):
    for store in (MemoryKeyStore(), SharedMemoryKeyStore(str(tmp_path / "keys"))):
        for operation in (store.create, store.get, store.destroy, lambda k, s=store: s.present({k})):
            with pytest.raises(ValueError, match="Not a ballot key id"):
                operation(key_id)
    assert not (tmp_path / "escape").exists()


def test_memory_store_keeps_the_contract():
    check_store_contract(MemoryKeyStore())


@pytest.fixture
def shm_directory() -> Iterator[Path]:
    """A fresh directory under /dev/shm (or the temp dir where there is none), removed afterwards."""
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    directory = root / f"estimator-test-{uuid.uuid4().hex}"
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_shared_memory_store_keeps_the_contract(shm_directory):
    check_store_contract(SharedMemoryKeyStore(str(shm_directory)))


def test_shared_memory_store_touches_nothing_until_a_key_is_created(shm_directory):
    store = SharedMemoryKeyStore(str(shm_directory))
    assert store.get(new_key_id()) is None
    store.destroy(new_key_id())
    assert not shm_directory.exists()


def test_shared_memory_store_files_are_private_and_destroy_leaves_none(shm_directory):
    store = SharedMemoryKeyStore(str(shm_directory))
    key_id = new_key_id()
    key = store.create(key_id)
    assert stat.S_IMODE(shm_directory.stat().st_mode) == 0o700
    assert [path.name for path in shm_directory.iterdir()] == [key_id]  # no temporary file left
    assert stat.S_IMODE((shm_directory / key_id).stat().st_mode) == 0o600
    assert (shm_directory / key_id).read_bytes() == key
    store.destroy(key_id)
    assert list(shm_directory.iterdir()) == []


def test_shared_memory_store_makes_a_loose_directory_private(shm_directory):
    shm_directory.mkdir(mode=0o755)
    shm_directory.chmod(0o755)
    SharedMemoryKeyStore(str(shm_directory)).create(new_key_id())
    assert stat.S_IMODE(shm_directory.stat().st_mode) == 0o700


def test_destroy_blanks_the_key_even_through_another_link(shm_directory):
    store = SharedMemoryKeyStore(str(shm_directory))
    key_id = new_key_id()
    store.create(key_id)
    # As a worker that died between linking and removing its temporary file would leave it.
    leftover = shm_directory / ".new-leftover"
    os.link(shm_directory / key_id, leftover)
    store.destroy(key_id)
    assert leftover.read_bytes() == bytes(32)


def test_a_rebuilt_shared_memory_store_sees_the_same_keys(shm_directory):
    key_id = new_key_id()
    key = SharedMemoryKeyStore(str(shm_directory)).create(key_id)
    again = SharedMemoryKeyStore(str(shm_directory))  # a worker restarted
    assert again.get(key_id) == key
    assert again.create(key_id) == key


def test_a_shared_memory_store_that_cannot_write_raises_key_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SharedMemoryKeyStore(str(blocker / "keys"))
    with pytest.raises(KeyStoreError):
        store.create(new_key_id())
    with pytest.raises(KeyStoreError):
        store.get(new_key_id())


def test_a_shared_memory_store_refuses_a_symlinked_directory(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(KeyStoreError, match="not a directory of this user"):
        SharedMemoryKeyStore(str(tmp_path / "link")).create(new_key_id())
    assert list((tmp_path / "real").iterdir()) == []


def create_in_another_process(directory: str, key_ids: list[str], start, results) -> None:
    """Wait for every racer, then create the keys; report what was stored."""
    store = SharedMemoryKeyStore(directory)
    start.wait()
    results.put([store.create(key_id) for key_id in key_ids])


def test_eight_processes_racing_to_create_keys_all_get_the_same_keys(shm_directory):
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(8), context.Queue()
    # Many keys, so that the racers really do collide on some of them.
    key_ids = [new_key_id() for _ in range(300)]
    racers = [
        context.Process(target=create_in_another_process, args=(str(shm_directory), key_ids, start, results))
        for _ in range(8)
    ]
    for racer in racers:
        racer.start()
    reports = [results.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join(timeout=30)
    assert [racer.exitcode for racer in racers] == [0] * 8
    store = SharedMemoryKeyStore(str(shm_directory))
    for n, key_id in enumerate(key_ids):
        assert {report[n] for report in reports} == {store.get(key_id)}
    assert sorted(path.name for path in shm_directory.iterdir()) == sorted(key_ids)


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_store() -> Iterator[RedisKeyStore]:
    """A store on the shared Redis under a prefix of its own; its keys are deleted afterwards."""
    if not redis_answers(SHARED_REDIS):
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    store = RedisKeyStore(SHARED_REDIS, prefix=f"estimator-test:{uuid.uuid4().hex}:")
    yield store
    client = redis.Redis.from_url(SHARED_REDIS)
    for name in client.scan_iter(match=store.prefix + "*"):
        client.delete(name)
    client.close()
    store.close()


def test_redis_store_keeps_the_contract(redis_store):
    check_store_contract(redis_store)


def test_redis_store_keys_expire(redis_store):
    key_id = new_key_id()
    key = redis_store.create(key_id)
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        assert client.get(redis_store.prefix + key_id) == key
        assert 30 * 24 * 3600 - 60 < client.ttl(redis_store.prefix + key_id) <= 30 * 24 * 3600
    finally:
        client.close()


def test_threads_racing_to_create_one_redis_key_all_get_the_same_key(redis_store):
    key_id = new_key_id()
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def race() -> None:
        start.wait()
        keys.append(redis_store.create(key_id))

    racers = [threading.Thread(target=race) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    assert len(keys) == 8
    assert len(set(keys)) == 1
    assert redis_store.get(key_id) == keys[0]


def port_is_closed(port: int) -> bool:
    """True when nothing accepts connections on port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_redis_store_that_went_away_fails_fast_and_loses_its_keys(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed, so no Redis can be stopped and restarted here")
    port = free_port()
    server = start_redis(binary, port, tmp_path)
    store = RedisKeyStore(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.5)
    try:
        key_id = new_key_id()
        store.create(key_id)
        stop_redis(server)
        assert port_is_closed(port)

        for operation in (store.create, store.get, store.destroy, lambda k: store.present({k})):
            began = time.monotonic()
            with pytest.raises(KeyStoreError, match="Redis key store unavailable"):
                operation(key_id)
            assert time.monotonic() - began < 3

        server = start_redis(binary, port, tmp_path)
        assert store.get(key_id) is None  # lost in the restart: voters will be asked to vote again
        assert store.present({key_id}) == set()
        assert len(store.create(key_id)) == 32
    finally:
        stop_redis(server)
        store.close()


# --- choosing the store -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("redis://127.0.0.1:6379/0", RedisKeyStore),
        ("rediss://user:secret@redis.example:6380/2", RedisKeyStore),
        ("unix:///run/redis/redis.sock?db=1", RedisKeyStore),
        ("shm:///dev/shm/estimator-keys", SharedMemoryKeyStore),
        ("memory://", MemoryKeyStore),
    ],
)
def test_a_key_store_uri_names_its_store(uri, kind):
    store = key_store_from_uri(uri)
    assert isinstance(store, kind)
    assert isinstance(store, KeyStore)
    if isinstance(store, RedisKeyStore):
        store.close()


def test_a_shared_memory_uri_names_its_directory():
    store = key_store_from_uri("shm:///dev/shm/estimator-keys/")
    assert isinstance(store, SharedMemoryKeyStore)
    assert store.directory == "/dev/shm/estimator-keys"


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "dev/shm/keys",
        "/dev/shm/keys",
        "file:///tmp/keys",
        "http://127.0.0.1:6379",
        "shm://dev/shm/keys",
        "shm://relative",
        "shm:///",
        "shm:",
        "shm:///dev/shm/keys?mode=777",
        "memory://somewhere",
        "sqlite:///keys.db",
    ],
)
def test_a_key_store_uri_that_is_not_understood_is_refused_clearly(uri):
    with pytest.raises(ValueError, match="Ballot key store"):
        key_store_from_uri(uri)


def the_old_predictable_folder(instance_path: str, database_uri: str) -> str:
    """The name the default folder once had: any local user could work it out."""
    digest = hashlib.sha256(f"{instance_path}\0{database_uri}".encode()).hexdigest()[:16]
    return os.path.join("/dev/shm", f"estimator-{digest}")


def default_store(instance_path: Path, database_uri: str = "sqlite:///app.db") -> SharedMemoryKeyStore:
    """The store an app with this instance folder and no BALLOT_KEY_STORE_URI uses."""
    app = Flask(__name__, instance_path=str(instance_path))
    app.config.update(BALLOT_KEY_STORE_URI=None, SQLALCHEMY_DATABASE_URI=database_uri)
    BallotKeys().init_app(app)
    store = app.extensions["ballot_keys"]
    assert isinstance(store, SharedMemoryKeyStore)
    return store


def owned_by_another_user(path: str) -> None:
    """Make path look made by another local user (root may hand it to `nobody`)."""
    if os.getuid() != 0:
        pytest.skip("only root can make a folder that belongs to another user")
    os.chown(path, 65534, 65534)


def test_a_folder_another_local_user_made_first_never_stops_the_votes(tmp_path):
    instance, database = str(tmp_path / "instance"), "sqlite:///app.db"
    os.mkdir(instance)
    planted = the_old_predictable_folder(instance, database)
    os.mkdir(planted, 0o777)
    owned_by_another_user(planted)
    store = None
    try:
        store = default_store(Path(instance), database)
        assert len(store.create(new_key_id())) == 32  # votes are sealed, not answered 503
        assert store.directory != planted
    finally:
        shutil.rmtree(planted, ignore_errors=True)
        if store is not None:
            shutil.rmtree(store.directory, ignore_errors=True)


def test_the_default_folder_is_unguessable_private_and_the_same_for_every_worker(tmp_path):
    with ThreadPoolExecutor(4) as pool:  # workers starting together agree on one folder
        stores = list(pool.map(lambda _: default_store(tmp_path), range(8)))
    folders = {store.directory for store in stores}
    assert len(folders) == 1
    folder = folders.pop()
    assert os.path.dirname(folder) == "/dev/shm" and os.path.basename(folder).startswith("estimator-keys-")
    info = os.lstat(folder)
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    other = default_store(tmp_path / "another-app")  # another app: another folder
    assert other.directory != folder
    for store in (stores[0], other):
        shutil.rmtree(store.directory)


def test_a_recorded_folder_that_vanished_or_was_replaced_is_made_afresh(tmp_path):
    first = default_store(tmp_path).directory
    os.rmdir(first)  # a reboot empties /dev/shm
    second = default_store(tmp_path).directory
    assert second != first and os.path.isdir(second)
    os.rmdir(second)
    os.mkdir(second, 0o755)  # somebody made a folder of that name meanwhile
    third = default_store(tmp_path).directory
    assert third not in (first, second)
    for folder in (second, third):
        shutil.rmtree(folder)


@pytest.mark.parametrize("who", ["group-readable", "another user's"])
def test_a_named_folder_that_is_not_private_is_refused_when_the_app_is_built(tmp_path, who):
    folder = tempfile.mkdtemp(prefix="estimator-test-planted-", dir="/dev/shm")
    try:
        if who == "group-readable":
            os.chmod(folder, 0o750)
        else:
            owned_by_another_user(folder)
        app = Flask(__name__, instance_path=str(tmp_path))
        app.config.update(BALLOT_KEY_STORE_URI=f"shm://{folder}", SQLALCHEMY_DATABASE_URI="sqlite://")
        with pytest.raises(KeyStoreRefused, match="BALLOT_KEY_STORE_URI") as refused:
            BallotKeys().init_app(app)
        assert folder in str(refused.value) and "0700" in str(refused.value)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the app's holder -------------------------------------------------------------------------


def test_ballot_keys_uses_the_configured_store():
    app = Flask(__name__)
    app.config.update(BALLOT_KEY_STORE_URI="memory://", SQLALCHEMY_DATABASE_URI="sqlite://")
    holder = BallotKeys()
    holder.init_app(app)
    with app.app_context():
        assert isinstance(holder.store, MemoryKeyStore)
        assert holder.store is app.extensions["ballot_keys"]


def test_ballot_keys_refuses_a_bad_uri_when_the_app_is_built():
    app = Flask(__name__)
    app.config.update(BALLOT_KEY_STORE_URI="mongodb://db", SQLALCHEMY_DATABASE_URI="sqlite://")
    with pytest.raises(ValueError, match="not understood"):
        BallotKeys().init_app(app)


def test_ballot_keys_without_init_app_says_so():
    app = Flask(__name__)
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        BallotKeys().store  # noqa: B018  # the property is what is tested
