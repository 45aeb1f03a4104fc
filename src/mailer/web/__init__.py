"""The subscriber site (FastAPI): the app factory in app.py, one router per area."""

from __future__ import annotations

from mailer.web.app import create_app

__all__ = ["create_app"]
