"""Fixtures: a real SMTP server on 127.0.0.1, and settings for a throwaway database: a
SQLite file, and PostgreSQL too when MAILER_TEST_POSTGRES_URL names a database that the
tests may empty (CI starts one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mailer.db import open_database
from mailer.settings import Settings
from mailer.testing import RecordingHandler, empty_postgres, make_settings, smtp_server

POSTGRES_URL = os.environ.get("MAILER_TEST_POSTGRES_URL", "")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="MAILER_TEST_POSTGRES_URL is not set"),
    ),
]


@pytest.fixture
def smtp() -> Iterator[RecordingHandler]:
    """A started SMTP server on 127.0.0.1 that records what it receives."""
    with smtp_server() as (_controller, handler):
        yield handler


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return empty_postgres(POSTGRES_URL)
    return f"sqlite:///{tmp_path / 'subscribers.db'}"


@pytest.fixture
def settings(tmp_path: Path, smtp: RecordingHandler, database_url: str) -> Settings:
    return make_settings(tmp_path, smtp.port, database_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = open_database(settings.database.url)
    yield engine
    engine.dispose()
