"""The servers of one database must share one secret key and one ballot key store, or not start.

Each serving process (a gunicorn worker) records what it serves with in the `instances` table: a
fingerprint of its SECRET_KEY and the identity of its ballot key store (a random id the store itself
holds, see sealing.KeyStore.identity), and refreshes it every INSTANCE_HEARTBEAT_SECONDS. A process
that starts while another one, seen within ALIVE_HEARTBEATS of those, serves with another secret or
another store
refuses to start and says what to set: with two secrets, forms posted to the other machine expire;
with two stores, a vote served by one machine cannot open the round keyed by the other. `/readyz`
reports the same while it holds, and a vote that meets a round keyed by a store that is alive
elsewhere changes nothing (ForeignKeyStore) instead of starting the round's ballots afresh.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import secrets
import socket
import sys
import threading
from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, current_app

from .extensions import db
from .models import Instance, utcnow
from .sealing import KeyStore, KeyStoreError, KeyStoreRefused

log = logging.getLogger(__name__)

#: How many heartbeats an instance may miss before it no longer counts as running.
ALIVE_HEARTBEATS = 8


class InstanceRefused(RuntimeError):
    """This instance would break the promise if it served: it does not start."""


class ForeignKeyStore(KeyStoreError):
    """The round's key is held by a ballot key store this server does not share: nothing is changed."""


def secret_fingerprint(secret: str | bytes) -> str:
    """A keyed hash that is equal for equal secrets and tells nothing of the secret."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, b"estimator secret fingerprint", hashlib.sha256).hexdigest()


def serving(app: Flask) -> bool:
    """Whether this app serves requests (in a gunicorn worker) rather than runs a command: the
    SERVING setting when given, else whether gunicorn's arbiter forked this process (the app
    imports parts of gunicorn for its logs, never the arbiter)."""
    setting = app.config.get("SERVING")
    return bool(setting) if setting is not None else "gunicorn.arbiter" in sys.modules


class Registry:
    """This process's row in `instances`, the checks made against the others, and its heartbeat."""

    def __init__(self, app: Flask, store: KeyStore) -> None:
        self.id = secrets.token_hex(16)
        self.host = socket.gethostname()[:255]
        self.fingerprint = secret_fingerprint(app.config["SECRET_KEY"])
        self.uri: str = app.extensions["ballot_key_store_uri"]
        self.store = store
        self.engine = db.engine
        self.heartbeat_seconds = float(app.config["INSTANCE_HEARTBEAT_SECONDS"])
        #: How long after its last heartbeat an instance still counts as running, in seconds.
        self.alive_seconds = ALIVE_HEARTBEATS * self.heartbeat_seconds
        self._identity: str | None = None
        #: Whether the key store could not be asked at start whether it writes to disk, and what
        #: the heartbeat found when it could: /readyz reports it.
        self._persistence_unverified = False
        self._persisting: str | None = None
        self._stopped: threading.Event | None = None  # set by stop(); None until start()

    def identity(self) -> str:
        """The key store's identity, asked once and then again at each heartbeat."""
        if self._identity is None:
            self._identity = self.store.identity()
        return self._identity

    def refresh_identity(self, connection: sa.Connection) -> str | None:
        """Ask the store its identity again. When it changed (the store restarted and lost every
        key), the instances that reported the old one were using this same store: their rows are
        renamed with it, so that a restart of a shared Redis is never taken for two stores. None
        when the store cannot be asked now."""
        before = self._identity
        try:
            self._identity = self.store.identity()
        except KeyStoreError:
            return None  # keep the last one known: the store is down, votes answer 503 meanwhile
        if before is not None and before != self._identity:
            log.warning("Ballot key store %s lost its keys (it restarted): its identity changed", self.uri)
            connection.execute(
                sa.update(Instance).where(Instance.key_store == before).values(key_store=self._identity)
            )
        return self._identity

    def _known_identity_again(self) -> None:
        """Ask the store its identity again, keeping the last one known when it cannot be asked."""
        try:
            self._identity = self.store.identity()
        except KeyStoreError:
            pass

    def _known_identity(self) -> str | None:
        """The key store's identity, or None when the store cannot be asked now."""
        try:
            return self.identity()
        except KeyStoreError as error:
            log.warning("Ballot key store %s cannot be asked its identity now: %s", self.uri, error)
            return None

    # --- what the others serve with ---

    def conflicts(self, connection: sa.Connection) -> list[str]:
        """What differs between this instance and the others seen running: one sentence each."""
        since = utcnow() - timedelta(seconds=self.alive_seconds)
        others = connection.execute(
            sa.select(Instance.host, Instance.secret_fingerprint, Instance.key_store, Instance.key_store_uri)
            .where(Instance.seen_at > since, Instance.id != self.id)
            .order_by(Instance.seen_at.desc())
        ).all()
        found = []
        secrets_differ = [host for host, fingerprint, _, _ in others if fingerprint != self.fingerprint]
        if secrets_differ:
            found.append(
                "SECRET_KEY differs from the one the other running instances of this database use "
                f"(on {_hosts(secrets_differ)}): set the same SECRET_KEY on every machine"
            )

        def differ() -> list[tuple[str, str]]:
            mine = self._identity
            return [(host, uri) for host, _, store, uri in others if mine and store and store != mine]

        stores_differ = differ()
        if stores_differ:  # this instance's own knowledge may be the older: the store restarted
            self._known_identity_again()
            stores_differ = differ()
        if stores_differ:
            host, uri = stores_differ[0]
            found.append(
                f"this instance's ballot key store ({self.uri}) is not the one the other running "
                f"instances of this database use ({uri} on {_hosts(h for h, _ in stores_differ)}): set "
                "BALLOT_KEY_STORE_URI to one shared Redis (redis://…) on every machine"
            )
        return found

    def problem(self) -> str | None:
        """Why this instance should not serve now, or None; asked by /readyz. Only a serving
        instance has a say: a command or a test's app serves nothing."""
        if self._stopped is None:
            return None
        if self._persisting:
            return self._persisting
        self._known_identity()
        try:
            with self.engine.connect() as connection:
                found = self.conflicts(connection)
        except sa.exc.DBAPIError:
            return None  # the database check of /readyz says so
        return _sentence(found) if found else None

    def store_alive(self, key_store: str) -> bool:
        """Whether an instance running now serves with this key store."""
        since = utcnow() - timedelta(seconds=self.alive_seconds)
        return bool(
            db.session.scalar(
                sa.select(sa.literal(1))
                .where(Instance.key_store == key_store, Instance.seen_at > since)
                .limit(1)
            )
        )

    # --- start, heartbeat, stop ---

    def start(self, allow_persistence: bool) -> None:
        """Refuse to start on a key store that writes to disk or beside instances that differ;
        then say this instance serves, and keep saying it."""
        if not allow_persistence:
            refused = self._check_persistence()
            if refused:
                raise InstanceRefused(f"Estimator does not start: {refused}")
        self._known_identity()
        try:
            with self.engine.begin() as connection:
                found = self.conflicts(connection)
                if found:
                    raise InstanceRefused(
                        "Estimator does not start: "
                        + _sentence(found)
                        + f" An instance counts as running until {self.alive_seconds:.0f} s after it "
                        "stopped: once every machine has the new setting and none with the old one has "
                        "run for that long, the change is accepted."
                    )
                self._record(connection)
        except (sa.exc.ProgrammingError, sa.exc.OperationalError) as error:
            # No `instances` table yet (an old schema), or the database is down: the heartbeat
            # records this instance once the database answers.
            log.warning("Cannot record this instance in the database now: %s", error.orig)
            db.session.remove()
        self._stopped = threading.Event()
        atexit.register(self.stop)
        threading.Thread(target=self._beat_forever, name="instance-heartbeat", daemon=True).start()

    def _check_persistence(self) -> str | None:
        """Why the key store may not be used, when it writes its keys to disk or will not say; None
        when it keeps them in memory, or cannot be asked now (asked again at each heartbeat)."""
        accept = "set BALLOT_KEY_STORE_ALLOW_PERSISTENCE=1 to accept it, knowing its cost (docs/anonymity.md)"
        try:
            persists = self.store.persistence()
        except KeyStoreRefused as error:
            self._persistence_unverified = False
            return f"{error}; {accept}."
        except KeyStoreError as error:
            log.warning(
                "Ballot key store %s cannot be asked now whether it writes keys to disk: %s", self.uri, error
            )
            self._persistence_unverified = True
            return None
        self._persistence_unverified = False
        if persists:
            return (
                f"The ballot key store ({self.uri}) writes keys to disk: {persists}. A key that reaches "
                "a disk outlives the reveal and, with a copy of the database, links voters to their "
                f"cards. Keep the store in memory only, or {accept}."
            )
        return None

    def _record(self, connection: sa.Connection) -> None:
        """Insert or refresh this instance's row."""
        values = {
            "host": self.host,
            "secret_fingerprint": self.fingerprint,
            "key_store": self._identity,
            "key_store_uri": self.uri,
            "seen_at": utcnow(),
        }
        updated = connection.execute(sa.update(Instance).where(Instance.id == self.id).values(**values))
        if not updated.rowcount:
            connection.execute(sa.insert(Instance).values(id=self.id, **values))

    def beat(self) -> None:
        """Ask the store its identity again (it changes when the store lost everything) and refresh
        this instance's row; warn when another running instance differs."""
        try:
            with self.engine.begin() as connection:
                self.refresh_identity(connection)
                self._record(connection)
                found = self.conflicts(connection)
        except sa.exc.SQLAlchemyError as error:
            log.warning("Cannot refresh this instance's heartbeat: %s", error)
            return
        if found:
            log.error("This instance should not serve: %s", _sentence(found))
        if self._persistence_unverified:
            self._persisting = self._check_persistence()
            if self._persisting:
                log.error("This instance should not serve: %s", self._persisting)

    def _beat_forever(self) -> None:
        assert self._stopped is not None
        while not self._stopped.wait(self.heartbeat_seconds):
            self.beat()

    def stop(self) -> None:
        """This instance stops serving: remove its row, so that a changed setting is accepted at once."""
        if self._stopped is None or self._stopped.is_set():
            return
        self._stopped.set()
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.delete(Instance).where(Instance.id == self.id))
        except sa.exc.SQLAlchemyError:
            pass  # the row ages out after alive_seconds


def _hosts(hosts: Iterable[str]) -> str:
    """A few host names, each once."""
    names = list(dict.fromkeys(hosts))
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _sentence(parts: list[str]) -> str:
    """Parts joined into sentences, each starting with a capital."""
    return " ".join(part[0].upper() + part[1:] + "." for part in parts)


def registry() -> Registry:
    """The current app's registry."""
    return current_app.extensions["instances"]  # type: ignore[no-any-return]  # extensions: dict[str, Any]


def refuse_foreign_round(key_store: str | None) -> None:
    """The round's key is not in this server's store: raise ForeignKeyStore when another store,
    one that runs now, made it (the key is not lost: this server cannot see it)."""
    own = registry()
    # A missing key may come with a restart of this server's own store, which gave it a new identity.
    own.refresh_identity(db.session.connection())
    if key_store is None:
        return
    if key_store != own.identity() and own.store_alive(key_store):
        log.error(
            "A vote met a round whose ballot key is held by another ballot key store than this "
            "server's (%s), one other running instances use: nothing was changed. Set "
            "BALLOT_KEY_STORE_URI to one shared Redis (redis://…) on every machine.",
            own.uri,
        )
        raise ForeignKeyStore(f"round keyed by store {key_store}, this server's is {own.identity()}")


def register_instances(app: Flask) -> None:
    """Give the app its registry; a serving app checks the others and starts its heartbeat."""
    with app.app_context():
        app.extensions["instances"] = registry_ = Registry(app, app.extensions["ballot_keys"])
        if serving(app):
            try:
                registry_.start(bool(app.config.get("BALLOT_KEY_STORE_ALLOW_PERSISTENCE")))
            except InstanceRefused:
                db.session.remove()
                db.engine.dispose()  # the process ends: its connections go now, not when collected
                raise
