"""Builds shared by the worker processes of one machine: one render per change, not one per process.

Every process that holds streams of a group renders its views once per version (regions.py). With
several workers on one machine that is one render per worker for every change, although they all
render the same text. The shelf is a memory-backed folder (under /dev/shm, as the one-machine key
store) where the first worker to render a view's variant at a version leaves it; the others read it
instead of loading the group and rendering again.

What is shelved is what every screen of the variant shares: stencils, whose holes are left for each
viewer (stencils.py). Nothing personal is in them, no card is in any of them, and the folder is
this user's alone (0700), as the key store's is. A file is written whole under a temporary name and
renamed into place, so a reader never sees half of one; anything unreadable counts as missing, and
the reader renders for itself. Writing a group's newer version removes its older ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: How often a worker looks for what another one is rendering, in seconds.
WAIT_STEP = 0.005


class Shelf:
    """Bytes by (group, version, name) in one folder, for every worker of this machine."""

    def __init__(self, folder: Callable[[], str], namespace: str) -> None:
        # The folder is found (and made) on first use, so building an app writes nothing.
        self._folder = folder
        self._root: Path | None = None
        # One database's groups under one name: servers of other databases (tests, a staging copy
        # beside production) sharing the folder never read each other's group 1.
        self._namespace = hashlib.sha256(namespace.encode()).hexdigest()[:16]
        self._marked: set[tuple[int, str]] = set()

    @property
    def root(self) -> Path:
        """This database's part of the machine's folder."""
        if self._root is None:
            self._root = Path(self._folder()) / self._namespace
        return self._root

    def get(self, group_id: int, version: int, name: str) -> bytes | None:
        """What a worker left under this name at this version of the group, if anything."""
        try:
            return (self.root / str(int(group_id)) / f"{int(version)}-{name}").read_bytes()
        except OSError:  # not there (yet, or any more), or no folder: render instead
            return None

    def claim(self, group_id: int, version: int, name: str) -> bool:
        """Say that this worker renders it: True for the first worker to ask, False for the others,
        which wait for it (`wait`) instead of rendering the same at the same moment. Without a
        folder every worker renders for itself."""
        try:
            # Never the machine's folder itself: one that vanished is not made again, open to all.
            self.root.mkdir(mode=0o700, exist_ok=True)
            folder = self.root / str(int(group_id))
            folder.mkdir(mode=0o700, exist_ok=True)
            os.close(
                os.open(folder / f"{int(version)}-{name}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            )
        except FileExistsError:
            return False
        except OSError:
            return True
        return True

    def wait(self, group_id: int, version: int, name: str, seconds: float) -> bytes | None:
        """What another worker that claimed it leaves within `seconds`, or None (then render)."""
        deadline = time.monotonic() + seconds
        while (data := self.get(group_id, version, name)) is None and time.monotonic() < deadline:
            time.sleep(WAIT_STEP)  # cooperative under gevent
        return data

    def mark(self, group_id: int, word: str) -> None:
        """Note a word about the group for every worker (`marks`), once per process: which roles
        its views are shown to, so that whichever worker renders a change renders it for all."""
        if (group_id, word) in self._marked:
            return
        try:
            self.root.mkdir(mode=0o700, exist_ok=True)  # as in claim: never the machine's folder
            folder = self.root / str(int(group_id))
            folder.mkdir(mode=0o700, exist_ok=True)
            (folder / f"mark-{word}").touch(mode=0o600)
            self._marked.add((group_id, word))
        except OSError:
            pass  # unmarked: the worker that needs it renders it for itself

    def marks(self, group_id: int) -> set[str]:
        """The words the machine's workers noted about the group."""
        try:
            return {
                entry.name.removeprefix("mark-")
                for entry in os.scandir(self.root / str(int(group_id)))
                if entry.name.startswith("mark-")
            }
        except OSError:
            return set()

    def put(self, group_id: int, version: int, name: str, data: bytes) -> None:
        """Leave data for the other workers, and drop the group's older versions. Failing to write
        costs the others a render of their own, never an error."""
        try:
            folder = self.root / str(int(group_id))
            fd, temporary = tempfile.mkstemp(dir=folder, prefix=".new-")
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, folder / f"{int(version)}-{name}")
            for old in os.scandir(folder):
                number, dash, _rest = old.name.partition("-")
                if dash and number.isdigit() and int(number) < version:
                    Path(old.path).unlink(missing_ok=True)
        except OSError as error:
            log.warning("Live updates: cannot shelve a build of group %s: %s", group_id, error)
