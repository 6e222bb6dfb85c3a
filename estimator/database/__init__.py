"""The database helpers the blueprints use, one module per job: setting the engines up
(`engine`), the per-group locks (`locks`), the version every visible change bumps (`versions`) and
upserts (`upserts`)."""

from .engine import (
    INTENT,
    READ,
    WRITE,
    WRITE_LATER,
    begin_immediate,
    configure_postgresql,
    configure_sqlite,
    disk_full,
    locks_later,
    read_in_autocommit,
    read_rows,
    switched_on,
    write_in_transaction,
)
from .locks import hold_sqlite_write_lock, holding, lock_group
from .upserts import insert_unless_exists, upsert
from .versions import bump_version, bump_version_unless_changed, change_group, group_unchanged, in_group

__all__ = [
    "INTENT",
    "READ",
    "WRITE",
    "WRITE_LATER",
    "begin_immediate",
    "bump_version",
    "bump_version_unless_changed",
    "change_group",
    "configure_postgresql",
    "configure_sqlite",
    "disk_full",
    "group_unchanged",
    "hold_sqlite_write_lock",
    "holding",
    "in_group",
    "insert_unless_exists",
    "lock_group",
    "locks_later",
    "read_in_autocommit",
    "read_rows",
    "switched_on",
    "upsert",
    "write_in_transaction",
]
