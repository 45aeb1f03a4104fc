"""Fresh SQLite test databases without running every migration for each test: one file
migrated once, copied for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

from mailer.db import open_database


def migrated_sqlite(path: Path) -> Path:
    """A SQLite file at `path` holding the schema the migrations build (and no rows),
    in one file: copy it with `copy_sqlite` for each test's own database."""
    engine = open_database(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            # everything into the main file, so that one file is the whole database
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


def copy_sqlite(template: Path, path: Path) -> str:
    """A copy of the migrated `template` at `path`; its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)  # the template is one closed file, its WAL emptied
    return f"sqlite:///{path}"
