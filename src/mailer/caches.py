"""What a process keeps for the next one in the user's cache folder ($XDG_CACHE_HOME/mailer,
else ~/.cache/mailer): the email templates as Jinja compiled them, so a send started from
cron does not compile nine templates from source again. Each entry is checked against its
source when read, so an edited template is compiled afresh; a folder that cannot be
written means no cache, never a failed render."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import jinja2


def cache_folder(name: str) -> Path | None:
    """The folder `name` under mailer's cache folder, made if need be; None when it
    cannot be made or written (a read-only home, a service user without one)."""
    root = os.environ.get("XDG_CACHE_HOME") or ""
    try:
        base = Path(root) if os.path.isabs(root) else Path.home() / ".cache"
        folder = base / "mailer" / name
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


class _TolerantBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's cache of compiled templates in files, where a file that cannot be read or
    written (a full disk, a folder gone) costs a compilation, not the render."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError:
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def template_bytecode_cache(environment_key: str) -> jinja2.BytecodeCache | None:
    """Compiled templates kept across processes for the environments `environment_key`
    names, keyed by each template's name and file and checked against its source (Jinja's
    own rule); None where nothing can be kept. Each key has a folder of its own: Jinja
    folds a filter of a constant ("{{ 3|number }}") into the code it compiles, so code
    compiled with one language's filters must not serve another's."""
    digest = hashlib.sha256(environment_key.encode()).hexdigest()[:16]
    folder = cache_folder(f"templates/{digest}")
    return _TolerantBytecodeCache(str(folder)) if folder is not None else None
