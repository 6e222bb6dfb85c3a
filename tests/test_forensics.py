"""Forensics: what somebody who copies the database's storage can learn about who voted what.

The attacker of SPEC.md "Anonymity guarantee" takes the database's files — the SQLite file with its
`-wal` and `-shm`, or PostgreSQL's relation files and WAL segments — while a round is open and again
after its reveal. These tests vote distinctive cards and then read those files byte by byte, as that
attacker would: no card may be found tied to a voter (before the reveal no card may be found at all,
after it only in the anonymous tally rows), and after the reveal nothing may open a sealed ballot,
because the round's key exists nowhere any more.

Why the search is sound. The longest cards of any deck have three characters ("XXL", "100"), and
random ciphertext contains any given 2- or 3-byte string every 65 KiB or 16 MiB on average, so a
plain byte search for a card would "find" it by chance. The files are read in two ways instead:

- Decoded: every record of every page (SQLite: each B-tree page of the file and of each WAL frame;
  PostgreSQL: each heap and B-tree tuple of the relation files, dead ones included) is decoded into
  its column values. A card is found only when a whole text or byte value equals it: no chance match.
- Raw, for bytes outside any record (free space, the WAL stream, `-shm`): voter-shaped patterns only —
  a voter's nickname within 16 bytes of the card; on PostgreSQL a voter's id as a 4-byte integer
  right beside the card as a text value (varlena header and bytes); on SQLite the whole record a
  plain-text ballot row (id, round, voter, card) would be. The shortest pattern has 7 fixed bytes;
  the test computes, for the bytes it actually scanned, the expected number of chance matches if
  every byte were random, and requires it to stay below 1e-6.

Each test uses a database of its own, migrated from scratch, so its files hold nothing but what the
test did; on PostgreSQL the voters' ids are pushed far away from every other id in the cluster so
that no other row can put the same four bytes next to a card.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from estimator import create_app
from estimator.extensions import db
from estimator.sealing import KEY_SIZE, SEALED_SIZE, ballot_keys, unseal
from tests.conftest import add_issue, create_group, join, login, make_config, vote

#: Distinctive voters (long nicknames: any of them next to a card could not happen by chance).
VOTERS = ("Quokka Vesperine", "Marmot Zanzibari", "Pangolin Quixote", "Narwhal Obsidian")
#: The cards each voter chooses in turn on the t-shirt deck: the first one changes their mind, so a
#: superseded ballot is left behind in the WAL and dead rows too.
CHOICES = (("XS", "XXL"), ("XXL",), ("XS",), ("XXL",))
CARDS = ("XS", "XXL")
#: The expected number of chance matches of the raw patterns must stay below this.
FALSE_POSITIVE_BUDGET = 1e-6
#: On PostgreSQL the voters' ids start here: no serial id of any database in the cluster comes near.
DISTINCT_USER_ID = 1_900_000_000


# --- Reading SQLite's files -------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """SQLite's big-endian variable-length integer at pos: (value, next position)."""
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | data[pos + 8], pos + 9


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def sqlite_record(payload: bytes) -> tuple[object, ...]:
    """The column values of one SQLite record; text and blobs as bytes. ValueError if it is cut."""
    header_size, pos = _varint(payload, 0)
    kinds = []
    while pos < header_size:
        kind, pos = _varint(payload, pos)
        kinds.append(kind)
    values: list[object] = []
    body = header_size
    for kind in kinds:
        if kind == 0:
            values.append(None)
        elif kind in _INT_SIZES:
            size = _INT_SIZES[kind]
            values.append(int.from_bytes(payload[body : body + size], "big", signed=True))
            body += size
        elif kind == 7:
            values.append(struct.unpack(">d", payload[body : body + 8])[0])
            body += 8
        elif kind in (8, 9):
            values.append(kind - 8)
        elif kind >= 12:
            size = (kind - 12) // 2
            values.append(bytes(payload[body : body + size]))
            body += size
        else:
            raise ValueError(f"serial type {kind}")
    if body > len(payload):
        raise ValueError("record continues on an overflow page")
    return tuple(values)


def _local_payload(size: int, usable: int, table_leaf: bool) -> int:
    """How much of a cell's payload is on its own page (the rest is on overflow pages)."""
    most = usable - 35 if table_leaf else (usable - 12) * 64 // 255 - 23
    if size <= most:
        return size
    least = (usable - 12) * 32 // 255 - 23
    local = least + (size - least) % (usable - 4)
    return local if local <= most else least


def sqlite_page_records(page: bytes, first: bool, usable: int) -> Iterator[tuple[object, ...]]:
    """Every record of a B-tree page (leaf and interior, table and index); other pages give none."""
    start = 100 if first else 0
    kind = page[start]
    if kind not in (2, 5, 10, 13):
        return
    cells = int.from_bytes(page[start + 3 : start + 5], "big")
    pointers = start + (12 if kind in (2, 5) else 8)
    for i in range(cells):
        pos = int.from_bytes(page[pointers + 2 * i : pointers + 2 * i + 2], "big")
        try:
            if kind == 5:
                continue  # an interior table cell is a child pointer and a rowid, no record
            if kind == 2:
                pos += 4
            size, pos = _varint(page, pos)
            if kind == 13:
                _rowid, pos = _varint(page, pos)
            yield sqlite_record(page[pos : pos + _local_payload(size, usable, kind == 13)])
        except (IndexError, ValueError):
            continue


def sqlite_pages(path: Path) -> Iterator[tuple[str, bytes, bool, int]]:
    """(where, page, is page 1, usable size) for every page of the file and of every WAL frame.

    Every frame counts, committed or not, current or overwritten by a later one: an attacker who
    copies the WAL reads them all. Nothing is checkpointed first.
    """
    data = path.read_bytes() if path.exists() else b""
    wal_path = Path(f"{path}-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    if len(data) >= 100:
        page_size = int.from_bytes(data[16:18], "big")
        reserved = data[20]
    else:
        page_size, reserved = int.from_bytes(wal[8:12], "big"), 0
    page_size = 65536 if page_size == 1 else page_size
    usable = page_size - reserved
    for offset in range(0, len(data) - page_size + 1, page_size):
        yield (
            f"{path.name} page {offset // page_size + 1}",
            data[offset : offset + page_size],
            offset == 0,
            usable,
        )
    for number, offset in enumerate(range(32, len(wal) - 24 - page_size + 1, 24 + page_size)):
        page_number = int.from_bytes(wal[offset : offset + 4], "big")
        page = wal[offset + 24 : offset + 24 + page_size]
        yield f"{wal_path.name} frame {number} (page {page_number})", page, page_number == 1, usable


# --- Reading PostgreSQL's files ---------------------------------------------------------------

_ALIGN = {"c": 1, "s": 2, "i": 4, "d": 8}


def _aligned(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class Attribute:
    """What PostgreSQL needs to step over a column in a tuple: its length and alignment."""

    length: int
    align: int


def pg_deform(
    data: bytes, start: int, attributes: list[Attribute], nulls: bytes | None
) -> tuple[object, ...]:
    """The values of a heap or index tuple; varlena values as bytes, fixed-width ones as ints."""
    values: list[object] = []
    offset = start
    for number, attribute in enumerate(attributes):
        if nulls is not None and not (nulls[number >> 3] >> (number & 7)) & 1:
            values.append(None)
            continue
        if attribute.length == -1:
            if data[offset] == 0:  # padding before an aligned 4-byte header; a 1-byte one is not aligned
                offset = _aligned(offset, attribute.align)
            first = data[offset]
            if first == 0x01:  # a pointer to a TOAST table: not the value itself
                size = 2 + (16 if data[offset + 1] == 18 else 0)
                values.append(("toast", bytes(data[offset : offset + size])))
            elif first & 0x01:
                size = first >> 1
                values.append(bytes(data[offset + 1 : offset + size]))
            else:
                size = int.from_bytes(data[offset : offset + 4], "little") >> 2
                values.append(bytes(data[offset + 4 : offset + size]))
            if size < 1 or offset + size > len(data):
                raise ValueError("not a varlena")
            offset += size
        elif attribute.length == -2:
            end = data.index(0, offset)
            values.append(bytes(data[offset:end]))
            offset = end + 1
        else:
            offset = _aligned(offset, attribute.align)
            raw = data[offset : offset + attribute.length]
            if len(raw) < attribute.length:
                raise ValueError("tuple is cut")
            values.append(int.from_bytes(raw, "little", signed=True) if attribute.length <= 8 else raw)
            offset += attribute.length
    return tuple(values)


def pg_page_tuples(page: bytes, attributes: list[Attribute], index: bool) -> Iterator[tuple[object, ...]]:
    """Every tuple on a heap or B-tree page, dead ones included (they are still in the file)."""
    lower, upper, special = struct.unpack_from("<HHH", page, 12)
    if not 24 <= lower <= upper <= special <= len(page):
        return  # a new, empty page
    if index and special + 14 <= len(page) and page[special + 12] & 0x08:
        return  # the B-tree metapage holds no tuples
    for item in range((lower - 24) // 4):
        (pointer,) = struct.unpack_from("<I", page, 24 + 4 * item)
        offset, flags, length = pointer & 0x7FFF, (pointer >> 15) & 0x3, pointer >> 17
        if flags not in (1, 3) or length == 0 or offset + length > len(page):
            continue
        tup = page[offset : offset + length]
        try:
            if index:
                info = int.from_bytes(tup[6:8], "little")
                nulls = tup[8:12] if info & 0x8000 else None
                yield pg_deform(tup, 16 if nulls else 8, attributes, nulls)
            else:
                infomask2, infomask, hoff = struct.unpack_from("<HHB", tup, 18)
                natts = infomask2 & 0x07FF
                nulls = tup[23:hoff] if infomask & 0x0001 else None
                yield pg_deform(tup, hoff, attributes[:natts], nulls)
        except (IndexError, ValueError):
            continue


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def pg_wal_stream(wal_dir: Path, timeline: int, start: int, end: int, segment_size: int) -> bytes:
    """The WAL written between two positions, as one stream with the 8 KiB page headers cut out, so
    that a record split over two pages is contiguous again."""
    page_size = 8192
    start -= start % page_size
    stream = bytearray()
    for segment in range(start // segment_size, end // segment_size + 1):
        per_log = 0x100000000 // segment_size
        name = f"{timeline:08X}{segment // per_log:08X}{segment % per_log:08X}"
        data = (wal_dir / name).read_bytes()
        base = segment * segment_size
        first, last = max(start - base, 0), min(end - base + page_size, segment_size)
        for offset in range(first - first % page_size, last, page_size):
            page = data[offset : offset + page_size]
            if len(page) < 24:
                break
            info = int.from_bytes(page[2:4], "little")
            stream += page[40 if info & 0x0002 else 24 :]
    return bytes(stream)


# --- The search -------------------------------------------------------------------------------


@dataclass
class Evidence:
    """What one look at the storage found."""

    #: Storage as raw bytes, by name (a file, or PostgreSQL's WAL stream).
    raw: dict[str, bytes] = field(default_factory=dict)
    #: Decoded records: (where, column values).
    records: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)


@dataclass(frozen=True)
class Voter:
    """A voter as the storage knows them."""

    user_id: int
    nickname: str


@dataclass(frozen=True)
class Pattern:
    """A voter written beside a card: `fixed` bytes are given, spread over `variants` layouts."""

    description: str
    regex: re.Pattern[bytes]
    fixed: int
    variants: int


def sqlite_int(value: int) -> tuple[int, bytes]:
    """SQLite's (serial type, body bytes) for an integer value."""
    if value in (0, 1):
        return 8 + value, b""
    for kind, size in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (6, 8)):
        if -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
            return kind, value.to_bytes(size, "big", signed=True)
    raise ValueError(value)


def sqlite_ballot_record(round_id: int, user_id: int, card: str) -> bytes:
    """The exact bytes of a plain-text ballot row (id, round_id, user_id, card) in SQLite."""
    text = card.encode()
    round_kind, round_body = sqlite_int(round_id)
    user_kind, user_body = sqlite_int(user_id)
    return bytes([5, 0, round_kind, user_kind, 2 * len(text) + 13]) + round_body + user_body + text


def pg_text_encodings(card: str) -> list[bytes]:
    """A card as PostgreSQL stores a text value: with a 1-byte varlena header, or a 4-byte one."""
    text = card.encode()
    return [bytes([(len(text) + 1) << 1 | 1]) + text, ((len(text) + 4) << 2).to_bytes(4, "little") + text]


def voter_patterns(dialect: str, voters: list[Voter], round_id: int) -> list[Pattern]:
    """Every way the test looks for a voter written beside a card in raw bytes."""
    patterns = []
    gap = 16
    for voter in voters:
        nickname = re.escape(voter.nickname.encode())
        for card in CARDS:
            text = re.escape(card.encode())
            spread = rb"[\x00-\xff]{0,%d}" % gap
            size = len(voter.nickname.encode()) + len(card.encode())
            patterns += [
                Pattern(
                    f"{voter.nickname!r} then {card}", re.compile(nickname + spread + text), size, gap + 1
                ),
                Pattern(
                    f"{card} then {voter.nickname!r}", re.compile(text + spread + nickname), size, gap + 1
                ),
            ]
            if dialect == "sqlite":
                record = sqlite_ballot_record(round_id, voter.user_id, card)
                patterns.append(
                    Pattern(
                        f"ballot row of user {voter.user_id} with {card}",
                        re.compile(re.escape(record)),
                        len(record),
                        1,
                    )
                )
                continue
            user = voter.user_id.to_bytes(4, "little", signed=True)
            for encoded in pg_text_encodings(card):
                size = len(user + encoded)
                patterns += [
                    Pattern(
                        f"user {voter.user_id} then {card}", re.compile(re.escape(user + encoded)), size, 1
                    ),
                    Pattern(
                        f"{card} then user {voter.user_id}",
                        re.compile(re.escape(encoded) + rb"\x00{0,3}" + re.escape(user)),
                        size,
                        4,
                    ),
                ]
    return patterns


def expected_false_positives(evidence: Evidence, patterns: list[Pattern]) -> float:
    """The chance matches to expect if every scanned byte were random, as ciphertext is: at each
    start offset a pattern matches by chance with probability at most variants / 256**fixed."""
    scanned = sum(len(data) for data in evidence.raw.values())
    return sum(scanned * pattern.variants / 256.0**pattern.fixed for pattern in patterns)


def search_raw(evidence: Evidence, patterns: list[Pattern]) -> list[str]:
    """Where a voter-shaped pattern occurs in the raw storage."""
    return [
        f"{pattern.description} in {name} at byte {match.start()}"
        for name, data in evidence.raw.items()
        for pattern in patterns
        for match in pattern.regex.finditer(data)
    ]


def cards_in_records(evidence: Evidence, allowed: set[tuple[object, ...]]) -> list[str]:
    """Every decoded record holding a card as a whole value, except the expected tally rows."""
    cards = {card.encode() for card in CARDS}
    return [
        f"{where}: {values!r}"
        for where, values in evidence.records
        if any(value in cards for value in values) and values not in allowed
    ]


def sealed_ballots(evidence: Evidence) -> set[tuple[int, int, bytes]]:
    """(round id, user id, sealed card) of every decoded ballot row, current or superseded."""
    found = set()
    for _where, values in evidence.records:
        for i, value in enumerate(values):
            ids = [v for v in values[:i] if isinstance(v, int)]
            if isinstance(value, bytes) and len(value) == SEALED_SIZE and len(ids) >= 2:
                found.add((ids[-2], ids[-1], value))
    return found


# --- The two databases -------------------------------------------------------------------------


class Storage:
    """The files of the test's database, read as an attacker would, and its rows read through SQL.

    SQL goes through the app's own connection pool: on SQLite, closing the last connection to a
    database checkpoints its WAL, and the test must read the WAL as the app left it.
    """

    dialect = ""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def sql(self, statement: str, **params: object) -> list[sa.Row[Any]]:
        """The rows of one SQL statement."""
        with self.app.app_context(), db.engine.connect() as connection:
            result = connection.execute(sa.text(statement), params)
            rows = list(result) if result.returns_rows else []
            connection.commit()
            return rows

    def read(self) -> Evidence:
        raise NotImplementedError

    def tally_records(self) -> set[tuple[object, ...]]:
        """How the tally rows (and their unique index's entries) look once decoded."""
        raise NotImplementedError

    def rows(self) -> list[tuple[str, tuple[object, ...]]]:
        """Every row of every table through SQL: what a dump or a backup holds."""
        with self.app.app_context(), db.engine.connect() as connection:
            metadata = sa.MetaData()
            metadata.reflect(connection)
            return [
                (table.name, tuple(row))
                for table in sorted(metadata.tables.values(), key=lambda table: table.name)
                for row in connection.execute(sa.select(table))
            ]


class SQLiteStorage(Storage):
    dialect = "sqlite"

    def __init__(self, app: Flask, path: Path) -> None:
        super().__init__(app)
        self.path = path

    def read(self) -> Evidence:
        evidence = Evidence()
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{self.path}{suffix}")
            if path.exists():
                evidence.raw[path.name] = path.read_bytes()
        for where, page, first, usable in sqlite_pages(self.path):
            evidence.records += [(where, values) for values in sqlite_page_records(page, first, usable)]
        return evidence

    def tally_records(self) -> set[tuple[object, ...]]:
        rows = self.sql("SELECT id, round_id, card, count FROM tallies")
        # The table row stores its INTEGER PRIMARY KEY as NULL; the index entry ends with the rowid.
        return {(None, r.round_id, r.card.encode(), r.count) for r in rows} | {
            (r.round_id, r.card.encode(), r.id) for r in rows
        }


class PostgresStorage(Storage):
    dialect = "postgresql"

    def __init__(self, app: Flask, data_directory: Path, start_lsn: int) -> None:
        super().__init__(app)
        self.data_directory = data_directory
        #: Where the WAL not yet read begins: each look reads what was written since the one
        #: before, so a checkpoint that recycles the oldest segments loses nothing unread.
        self.wal_read_up_to = start_lsn
        (self.segment_size,) = self.sql(
            "SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN '8kB' THEN 8192 "
            "WHEN 'MB' THEN 1048576 END FROM pg_settings WHERE name = 'wal_segment_size'"
        )[0]

    def current_lsn(self) -> int:
        return _lsn(self.sql("SELECT pg_current_wal_lsn()::text")[0][0])

    def read(self) -> Evidence:
        evidence = Evidence()
        self.sql("CHECKPOINT")  # so that the relation files hold every page
        relations = self.sql(
            """
            SELECT c.oid, c.relname, c.relkind, pg_relation_filepath(c.oid) AS path, am.amname
            FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam
            WHERE c.relnamespace = 'public'::regnamespace
               OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
               OR c.oid IN (SELECT i.indexrelid FROM pg_index i
                            JOIN pg_class t ON t.reltoastrelid = i.indrelid
                            WHERE t.relnamespace = 'public'::regnamespace)
            """
        )
        end_lsn = self.current_lsn()
        timeline = int(self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0][:8], 16)
        for relation in relations:
            if relation.path is None:
                continue  # a partitioned table or a view has no file of its own
            attributes = [
                Attribute(row.attlen, _ALIGN[row.attalign])
                for row in self.sql(
                    "SELECT attlen, attalign FROM pg_attribute WHERE attrelid = :oid AND attnum > 0 "
                    "ORDER BY attnum",
                    oid=relation.oid,
                )
            ]
            main = self.data_directory / relation.path
            for file in sorted(main.parent.glob(main.name + "*")):
                if not re.fullmatch(re.escape(main.name) + r"(\.\d+|_fsm|_vm|_init)?", file.name):
                    continue
                data = file.read_bytes()
                evidence.raw[f"{relation.relname} ({file.name})"] = data
                decodable = relation.relkind in ("r", "t") or (
                    relation.relkind == "i" and relation.amname == "btree"
                )
                if not decodable or "_" in file.name:
                    continue
                for block in range(0, len(data) - 8191, 8192):
                    page = data[block : block + 8192]
                    evidence.records += [
                        (f"{relation.relname} block {block // 8192}", values)
                        for values in pg_page_tuples(page, attributes, relation.relkind == "i")
                    ]
        evidence.raw["WAL"] = pg_wal_stream(
            self.data_directory / "pg_wal", timeline, self.wal_read_up_to, end_lsn, self.segment_size
        )
        self.wal_read_up_to = end_lsn
        return evidence

    def tally_records(self) -> set[tuple[object, ...]]:
        rows = self.sql("SELECT id, round_id, card, count FROM tallies")
        return {(r.id, r.round_id, r.card.encode(), r.count) for r in rows} | {
            (r.round_id, r.card.encode()) for r in rows
        }

    def make_user_ids_distinct(self) -> None:
        """Give the next users ids far above any id in the cluster (this database is the test's alone)."""
        self.sql(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), :start)",
            start=DISTINCT_USER_ID + secrets.randbelow(1_000_000),
        )


@pytest.fixture
def fresh(database_uri, key_store_uri, tmp_path) -> Iterator[tuple[Flask, Storage]]:
    """The app on a database of this test alone, migrated from scratch, and that database's storage.

    On PostgreSQL a temporary replication slot keeps every WAL segment written from the start of
    the test until its end: without it, a checkpoint (the test's own, or another database's) could
    recycle a segment before the test has read it.
    """
    server = keeper = None
    if database_uri.startswith("sqlite"):
        url = "sqlite:///" + str(tmp_path / "forensics.sqlite")
    else:
        server = sa.create_engine(database_uri, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        name = f"{sa.engine.make_url(database_uri).database}_forensics_{secrets.token_hex(4)}"
        with server.connect() as connection:
            data_directory = Path(connection.exec_driver_sql("SHOW data_directory").scalar_one())
            if not os.access(data_directory, os.R_OK | os.X_OK):
                pytest.skip(f"PostgreSQL's data directory {data_directory} is not readable here (not root)")
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        keeper = server.connect()  # the slot lives as long as this session
        slot = re.sub(r"[^a-z0-9_]", "_", name.lower())[:63]
        keeper.exec_driver_sql("SELECT pg_create_physical_replication_slot(%s, true, true)", (slot,))
        start_lsn = _lsn(keeper.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar_one())
        url = sa.engine.make_url(database_uri).set(database=name).render_as_string(hide_password=False)
    app = create_app(make_config(url, BALLOT_KEY_STORE_URI=key_store_uri))
    app.instance_path = str(tmp_path)
    try:
        with app.app_context():
            upgrade()
        if server is None:
            yield app, SQLiteStorage(app, tmp_path / "forensics.sqlite")
        else:
            yield app, PostgresStorage(app, data_directory, start_lsn)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if server is not None and keeper is not None:
            keeper.close()  # drops the temporary slot
            with server.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            server.dispose()


def key_candidates(values: list[object]) -> set[bytes]:
    """Every 32-byte string that a stored value holds or encodes (raw, hex, base64)."""
    candidates: set[bytes] = set()
    for value in values:
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, memoryview):
            value = bytes(value)
        if not isinstance(value, bytes):
            continue
        forms = [value]
        text = value.strip()
        for decode in (binascii.unhexlify, base64.b64decode, base64.urlsafe_b64decode):
            for padded in {text, text + b"=" * (-len(text) % 4)}:
                try:
                    forms.append(decode(padded))
                except (binascii.Error, ValueError):
                    pass
        for form in forms:
            candidates.update(form[i : i + KEY_SIZE] for i in range(len(form) - KEY_SIZE + 1))
    return candidates


def test_no_card_in_the_storage_and_no_key_after_the_reveal(fresh, key_store_uri):
    """Distinctive cards never reach the files in plain text, open or revealed; afterwards the key is gone."""
    app, storage = fresh
    owner = app.test_client()
    assert login(owner, "Olivia Facilitator").status_code == 302
    group_id = create_group(owner, "Forensics", deck="tshirt")
    issue_id = add_issue(app, owner, group_id, "FORENSIC-1")
    if isinstance(storage, PostgresStorage):
        storage.make_user_ids_distinct()
    for nickname, choices in zip(VOTERS, CHOICES, strict=True):
        client = app.test_client()
        assert login(client, nickname).status_code == 302
        assert join(app, client, group_id).status_code == 302
        for card in choices:
            assert vote(client, issue_id, card).status_code == 302
    (round_id,) = storage.sql("SELECT id FROM rounds WHERE issue_id = :issue", issue=issue_id)[0]
    voters = [Voter(user_id, nickname) for user_id, nickname in storage.sql("SELECT id, nickname FROM users")]
    voters = [voter for voter in voters if voter.nickname in VOTERS]
    assert len(voters) == len(VOTERS)
    patterns = voter_patterns(storage.dialect, voters, round_id)

    # While the round is open: no card anywhere — not as a value of any record, live or dead, in the
    # files or through SQL, and not beside a voter in the raw bytes.
    open_round = storage.read()
    assert cards_in_records(open_round, allowed=set()) == []
    assert search_raw(open_round, patterns) == []
    assert [(table, row) for table, row in storage.rows() if any(value in CARDS for value in row)] == []
    assert expected_false_positives(open_round, patterns) < FALSE_POSITIVE_BUDGET

    # The search did see the ballots: the decoder read every ballot row with its voter and its
    # fixed-size sealed card, and the raw bytes hold each sealed card (on SQLite in the WAL as the
    # app left it, on PostgreSQL in the ballots table's file and in the WAL).
    rows = storage.sql(
        "SELECT round_id, user_id, sealed, (SELECT key_id FROM rounds WHERE id = round_id) FROM ballots"
    )
    sealed = {(r[0], r[1], bytes(r[2])) for r in rows}
    (key_id,) = {r[3] for r in rows}
    assert {user_id for _round, user_id, _value in sealed} == {voter.user_id for voter in voters}
    assert all(len(value) == SEALED_SIZE for _round, _user, value in sealed)
    assert sealed <= sealed_ballots(open_round)
    holders = ["forensics.sqlite-wal"] if storage.dialect == "sqlite" else ["WAL"]
    holders += [name for name in open_round.raw if name.startswith("ballots (")]
    for name in holders:
        assert all(value in open_round.raw[name] for _round, _user, value in sealed), (
            f"{name} lacks a sealed card"
        )

    # The key is outside the database: it is in the key store, it opens the sealed cards, and it is
    # in none of the database's files.
    with app.app_context():
        key = ballot_keys.store.get(key_id)
    assert key is not None and len(key) == KEY_SIZE
    nicknames = {voter.user_id: voter.nickname for voter in voters}
    chosen = dict(zip(VOTERS, CHOICES, strict=True))
    assert {
        (user_id, unseal(key, value, round_id=round_, user_id=user_id, key_id=key_id))
        for round_, user_id, value in sealed
    } == {(user_id, chosen[nicknames[user_id]][-1]) for user_id in nicknames}
    assert [name for name, data in open_round.raw.items() if key in data] == []

    response = owner.post(f"/issues/{issue_id}/reveal")
    assert response.status_code == 302
    assert "Votes revealed" in owner.get(response.headers["Location"]).get_data(as_text=True)
    assert storage.sql("SELECT key_id FROM rounds WHERE id = :r", r=round_id)[0][0] is None
    assert storage.sql("SELECT count(*) FROM ballots WHERE sealed IS NOT NULL")[0][0] == 0
    assert sorted(tuple(r) for r in storage.sql("SELECT card, count FROM tallies")) == [("XS", 1), ("XXL", 3)]

    # After the reveal: cards only in the tally rows (card, how many), never beside a voter.
    revealed = storage.read()
    tallies = storage.tally_records()
    assert cards_in_records(revealed, allowed=tallies) == []
    assert any(values in tallies for _where, values in revealed.records), (
        "the decoder did not see the tallies"
    )
    assert search_raw(revealed, patterns) == []
    if storage.dialect == "postgresql":  # the WAL read holds the reveal: the tally rows' inserts
        tally_bytes = round_id.to_bytes(4, "little") + pg_text_encodings("XXL")[0]
        assert tally_bytes in revealed.raw["WAL"], "the WAL read does not hold the reveal"
    dump = storage.rows()
    assert [(table, row) for table, row in dump if table != "tallies" and any(v in CARDS for v in row)] == []
    assert expected_false_positives(revealed, patterns) < FALSE_POSITIVE_BUDGET

    # And nothing can decrypt: the key store no longer has the key, no file holds it, and no value
    # of any column of any row — live or dead, in the files or through SQL — opens a sealed card,
    # neither one still in the storage nor one that a backup taken while the round was open holds.
    with app.app_context():
        assert ballot_keys.store.get(key_id) is None
    folder = Path(urlsplit(key_store_uri).path)
    assert not (folder / key_id).exists()
    assert [file.name for file in folder.iterdir() if file.is_file() and key in file.read_bytes()] == []
    assert [name for name, data in revealed.raw.items() if key in data] == []
    candidates = key_candidates(
        [value for _where, record in revealed.records for value in record]
        + [value for _table, row in dump for value in row]
    )
    assert len(candidates) > 100, "hardly any stored value was tried as a key"
    assert key not in candidates
    backup = sealed | sealed_ballots(revealed)  # with the superseded ballot, dead but still on disk
    opened = [
        (user_id, candidate.hex())
        for round_, user_id, value in backup
        for candidate in candidates
        if unseal(candidate, value, round_id=round_, user_id=user_id, key_id=key_id) is not None
    ]
    assert opened == []
