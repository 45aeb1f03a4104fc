"""Where bounce emails are read from: a message file, a folder of them, a Maildir or an
mbox, each message handed on as (where it came from, its bytes) one at a time, so a
large mailbox is never held whole."""

from __future__ import annotations

import mailbox
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailer.errors import MailerError

_MAILDIR_PARTS = ("cur", "new", "tmp")
_MBOX_START = b"From "


class MailboxError(MailerError):
    """A path given to read bounces from does not exist or cannot be read."""


def read_messages(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of every message under `paths`, in order: a file is one message
    (or an mbox, when it starts with "From "); a folder is a Maildir when it has cur/,
    new/ and tmp/, else its files and subfolders, by name."""
    for path in paths:
        yield from _read_path(Path(path))


def _read_path(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        if not path.exists():
            raise MailboxError(
                f"{path}: no such file or folder; give a message file, a folder of them, "
                "a Maildir or an mbox"
            )
        if path.is_dir():
            yield from _read_maildir(path) if is_maildir(path) else _read_folder(path)
        elif _starts_like_mbox(path):
            yield from _read_mbox(path)
        else:
            yield str(path), path.read_bytes()
    except OSError as error:
        raise MailboxError(
            f"{path}: cannot be read ({error.strerror or error}); check that it exists "
            "and that this user may read it"
        ) from error


def is_maildir(path: Path) -> bool:
    return all((path / part).is_dir() for part in _MAILDIR_PARTS)


def _read_folder(folder: Path) -> Iterator[tuple[str, bytes]]:
    # hidden files are a desktop's or an editor's (.DS_Store, .swp), not messages
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith("."):
            yield from _read_path(entry)


def _starts_like_mbox(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_MBOX_START)) == _MBOX_START


def _read_mbox(path: Path) -> Iterator[tuple[str, bytes]]:
    # mailbox.mbox indexes the file's "From " lines, then reads one message at a time
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield f"{path}#{number}", box.get_bytes(key)
    finally:
        box.close()


def _read_maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        try:
            message = box.get_message(key)
            data = box.get_bytes(key)
        except (KeyError, FileNotFoundError):
            continue  # a mail client moved or deleted it meanwhile: read it next time
        info = message.get_info()
        yield f"{path}/{message.get_subdir()}/{key}{':' + info if info else ''}", data
