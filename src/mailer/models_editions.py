"""An issue's editions: the same issue rendered for readers of another language (and, for
a digest by language, another choice of its articles). The publication's own edition
stays in the issue's row; each other one is a row here, rendered once, frozen with its
issue once queued, and named by the deliveries that get it (delivery.variant_id)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel


def _text(default: str = "") -> Column:  # type: ignore[type-arg]
    return Column(Text, nullable=False, server_default=default)


class IssueVariant(SQLModel, table=True):
    __tablename__ = "issue_variant"
    __table_args__ = (UniqueConstraint("issue_id", "key", name="uq_issue_variant_key"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id")
    # the readers' own language, one of [publication] languages
    language: str = Field(sa_column=Column(Text, nullable=False))
    # the language, and for a digest by language the articles' languages its readers
    # read when not all of them: "fa-AF", "fa-AF|fa" (editions.Edition.key)
    key: str = Field(sa_column=Column(Text, nullable=False))
    article_ids: str = Field(default="", sa_column=_text())  # the articles it shows, in order
    subject: str = Field(sa_column=Column(Text, nullable=False))
    preheader: str = Field(default="", sa_column=_text())
    html: str = Field(default="", sa_column=_text())
    text: str = Field(default="", sa_column=_text())
    thanks_html: str = Field(default="", sa_column=_text())
    thanks_text: str = Field(default="", sa_column=_text())
    images: str = Field(default="[]", sa_column=_text("[]"))  # as Issue.images


ISSUE_VARIANTS = cast(Table, IssueVariant.__table__)  # type: ignore[attr-defined]
