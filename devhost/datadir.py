"""The local host's data folder: which files belong together, and who is using them.

The embedded backends keep one SQLite file per service database plus ``bus.db``, and the files
refer to each other (payments name orders, the bus holds messages about both). If one of them is
lost or replaced while the others remain, starting anyway would silently run on half the data, so
``check`` refuses, naming the file, unless the user accepts the loss. Each file carries a random
identity (a table the host owns), recorded in ``manifest.json`` beside them.

Running hosts hold a shared lock on ``.host.lock``; ``reset`` needs the exclusive lock, so it
refuses while any host runs on the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO

MANIFEST = "manifest.json"
LOCK_FILE = ".host.lock"
_IDENTITY_TABLE = "devhost_file_identity"


class DataDirectoryError(RuntimeError):
    """The data folder cannot be used as it is; the message says which file and what to do."""


class DataDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[bytes] | None = None

    # -- who uses it ----------------------------------------------------------------------------

    def hold(self) -> None:
        """Mark the folder as in use by this host (until ``release`` or the process ends)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = (self.path / LOCK_FILE).open("ab")
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_SH)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def reset(self) -> bool:
        """Delete the folder; refuses while a host runs on it. False when there was nothing."""
        if not self.path.exists():
            return False
        lock_path = self.path / LOCK_FILE
        with lock_path.open("ab") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataDirectoryError(
                    f"a local host is running on {self.path}; stop it (Ctrl-C) before resetting "
                    "its data") from None
            shutil.rmtree(self.path)
        return True

    # -- what is in it --------------------------------------------------------------------------

    def check(self, files: Iterable[str], accept_missing: bool = False) -> list[str]:
        """Refuse a damaged file, and a lost or replaced one while others remain (unless
        ``accept_missing``). Returns warnings for what was accepted."""
        manifest = self._manifest()
        warnings = []
        for name in files:
            path = self.path / name
            recorded = manifest.get(name)
            if path.exists() and path.stat().st_size > 0:
                identity = _identity(path)  # raises for a damaged file
                if recorded is None or identity == recorded:
                    continue
                problem = f"{path} was replaced by another file"
            elif recorded is None:
                continue  # a new file: nothing refers to it yet
            else:
                problem = f"{path} is missing or empty"
            others = [n for n in manifest if n != name and (self.path / n).exists()]
            if not others:  # everything is gone: as good as a reset
                manifest.pop(name, None)
                continue
            if not accept_missing:
                raise DataDirectoryError(
                    f"{problem}, but {', '.join(others)} still refer to its data."
                    f" Restore it, reset all local data (make reset), or start with "
                    f"--accept-missing-data to go on without it")
            warnings.append(f"{problem}; going on without its data (--accept-missing-data)")
            manifest.pop(name, None)
        self._write_manifest(manifest)
        return warnings

    def register(self, files: Iterable[str]) -> None:
        """Give each existing file an identity and record it (after the backends created them)."""
        manifest = self._manifest()
        for name in files:
            path = self.path / name
            if path.exists() and name not in manifest:
                manifest[name] = _identity(path, create=True)
        self._write_manifest(manifest)

    def _manifest(self) -> dict[str, str]:
        path = self.path / MANIFEST
        if not path.exists():
            return {}
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            files = document["files"]
            if not isinstance(files, dict):
                raise TypeError("files is not an object")
        except (ValueError, KeyError, TypeError) as error:
            raise DataDirectoryError(f"{path} is damaged ({error}); delete it to rebuild it from "
                                     "the data files") from None
        return {str(k): str(v) for k, v in files.items()}

    def _write_manifest(self, manifest: dict[str, str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / MANIFEST
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps({"files": manifest}, indent=2), encoding="utf-8")
        os.replace(temporary, target)


def _identity(path: Path, create: bool = False) -> str:
    """The file's identity; raises DataDirectoryError naming the file when it is damaged."""
    try:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # reads the header: not-a-db fails
            if create:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {_IDENTITY_TABLE} (id TEXT NOT NULL)")
                if conn.execute(f"SELECT id FROM {_IDENTITY_TABLE}").fetchone() is None:
                    conn.execute(f"INSERT INTO {_IDENTITY_TABLE} (id) VALUES (?)",
                                 (uuid.uuid4().hex,))
            row = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                (_IDENTITY_TABLE,)).fetchone()
            if row is None:
                return ""
            found = conn.execute(f"SELECT id FROM {_IDENTITY_TABLE}").fetchone()
            return str(found[0]) if found else ""
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise DataDirectoryError(
            f"{path} is damaged ({error}): restore it from a backup, or move it away and start "
            "with --accept-missing-data") from None
