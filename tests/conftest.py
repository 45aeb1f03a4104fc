"""Fixtures: a real SMTP server on 127.0.0.1, and settings for a throwaway database: a
SQLite file, and PostgreSQL too when MAILER_TEST_POSTGRES_URL names a database that the
tests may empty (CI starts one). Under pytest-xdist each worker empties a database of its
own beside it (`mailer_test_gw0`, ...), created on first use."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from deskclient import ANN, PASSWORD, Desk
from mailer import editors
from mailer.articles import boilerplate
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.messages import MessageBuilder
from mailer.models import Article, EditorRole, utcnow
from mailer.render import render_article_issue
from mailer.settings import Settings
from mailer.sources import read_article
from mailer.testing import (
    RecordingHandler,
    empty_postgres,
    make_settings,
    served,
    smtp_server,
    worker_database,
)
from mailer.testing.databases import copy_sqlite, migrated_sqlite

POSTGRES_URL = worker_database(
    os.environ.get("MAILER_TEST_POSTGRES_URL", ""), os.environ.get("PYTEST_XDIST_WORKER", "")
)
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="MAILER_TEST_POSTGRES_URL is not set"),
    ),
]


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The compiled templates (caches.py) of this run's processes in a folder of the run,
    not the user's ~/.cache: tests render from newsroom templates in throwaway folders."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture
def smtp() -> Iterator[RecordingHandler]:
    """A started SMTP server on 127.0.0.1 that records what it receives."""
    with smtp_server() as (_controller, handler):
        yield handler


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the migrations ran on once (per xdist worker), copied for each test."""
    return migrated_sqlite(tmp_path_factory.mktemp("template") / "subscribers.db")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of the test's own: a copy of the migrated SQLite file, or the worker's
    PostgreSQL database emptied (migrated by the test's first open). Rows deleted from a
    kept schema would leave the planner statistics of earlier tests behind, and with them
    other query plans than a new database gets."""
    if request.param == "postgresql":
        return empty_postgres(POSTGRES_URL)
    template = request.getfixturevalue("sqlite_template")
    return copy_sqlite(template, tmp_path / "subscribers.db")


@pytest.fixture(params=BACKENDS)
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with nothing in it, not even the schema: for building an older one."""
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


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> MessageBuilder:
    """The message builder of an issue made from the sample article (no database)."""
    settings = make_settings(tmp_path_factory.mktemp("messages"))
    draft = read_article(SAMPLE_ARTICLE, boilerplate(settings), title="Moscow talks – “Format”")
    article = Article(guid=draft.guid, title=draft.title, summary=draft.summary,
                      body_html=draft.body_html, published_at=utcnow())  # fmt: skip
    return MessageBuilder(settings, render_article_issue(settings, article), issue_id=7)


@pytest.fixture
def desk(engine: Engine, settings: Settings) -> Iterator[Desk]:
    """The site served with the desk on (sessions idle out after 3 s) and Ann, an admin."""
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    with served(settings.replace(desk={"idle_minutes": 0.05}), engine) as (url, running):
        yield Desk(url, running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright: one for a module's tests."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
