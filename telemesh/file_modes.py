"""Owner-only state: everything under TELEMESH_HOME is created 0600 (files) and 0700
(folders).

Two layers. Every process of the project (`python -m svc_<name>`, the `telemesh`
command, the relay, the trace receiver, the rotation) calls `owner_only()` first, so
whatever it or a library creates (SQLite's database, -wal and -shm files, logs, Envoy's
files) is owner-only, and so is what its children create. Secrets and databases are
also created with explicit modes (`private_folder`, `private_file`), so they stay
owner-only in a process that did not set the umask (tests, embedding). At start a
service warns when its home or its database file is open to group or others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from telemesh.logs import log

logger = logging.getLogger("telemesh.file_modes")

OWNER_ONLY_UMASK = 0o077
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def owner_only() -> None:
    """Makes every file and folder this process (and its children) creates owner-only."""
    os.umask(OWNER_ONLY_UMASK)


def private_folder(path: Path) -> Path:
    """Creates `path` and its missing parents 0700; existing folders are left as they
    are (an operator's choice, which the start-up warning reports)."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=FOLDER_MODE)
    return path


def private_file(path: Path) -> Path:
    """Creates `path` empty and 0600 when missing (so that SQLite, which copies the
    database file's mode to its -wal and -shm files, makes them 0600 too)."""
    private_folder(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return path


def write_private(path: Path, data: bytes) -> None:
    """Writes a new file that is 0600 from its first byte, whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def exposed(path: Path) -> bool:
    """True when `path` is readable, writable or searchable by group or others."""
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases or memory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database or "")


def warn_if_exposed(home: Path, database_url: str) -> None:
    """Logs a WARNING for the home folder and the SQLite database file when group or
    others may read them (modes and paths only, never contents)."""
    candidates = [("home", home)]
    database = sqlite_file(database_url)
    if database is not None:
        candidates.append(("database", database))
    for what, path in candidates:
        if path.exists() and exposed(path):
            log(
                logger,
                logging.WARNING,
                f"the {what} is readable by group or others: chmod it owner-only "
                "(0700 folders, 0600 files); it holds PHI, keys and credentials",
                what=what,
                path=str(path),
                mode=oct(stat.S_IMODE(path.stat().st_mode)),
            )
