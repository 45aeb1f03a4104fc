"""Fixtures: a real SMTP server on 127.0.0.1 and settings for a throwaway SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mailer.db import open_database
from mailer.settings import Settings
from mailer.testing import RecordingHandler, make_settings, smtp_server


@pytest.fixture
def smtp() -> Iterator[RecordingHandler]:
    """A started SMTP server on 127.0.0.1 that records what it receives."""
    with smtp_server() as (_controller, handler):
        yield handler


@pytest.fixture
def settings(tmp_path: Path, smtp: RecordingHandler) -> Settings:
    return make_settings(tmp_path, smtp.port)


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return open_database(settings.database.url)
