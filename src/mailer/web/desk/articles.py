"""The desk's articles: the list (searched by title, a page at a time) with the three ways
to bring one in (a URL, an uploaded file, pasted Markdown), and one article's page where
the editor sees what readers will and what the cleaner left out, and changes it. Every
POST checks the session's CSRF token and answers with a redirect to the article's page
(post/redirect/get), or the form again with what was wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mailer import desk_articles, links
from mailer.desk import articles
from mailer.desk_articles import ArticleView, BroughtIn
from mailer.errors import MailerError
from mailer.web.desk.session import CSRF_FIELD, SignedIn, csrf_matches
from mailer.web.desk.state import Desk, desk_of

router = APIRouter()

NOT_FOUND = {
    "title": "No such article",
    "text": "There is no article with that number. The list of articles shows them all.",
}
# What the article's page says after a change (?done=...), by the change.
DONE = {
    "edited": "Saved.",
    "unchanged": "Nothing was changed: the values are the ones the article had.",
    "put-back": "The paragraph is back in the body, at its place.",
    "taken-out": "The paragraph is out of the body; it is listed under what is left out.",
}


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and 0 < len(value) < 7 else 1


def _article_path(article_id: int) -> str:
    return links.path(links.DESK_ARTICLE_PATH, article_id=str(article_id))


def _paths(article_id: int) -> dict[str, str]:
    values = {"article_id": str(article_id)}
    return {
        "edit_path": links.path(links.DESK_ARTICLE_EDIT_PATH, **values),
        "put_back_path": links.path(links.DESK_ARTICLE_PUT_BACK_PATH, **values),
        "take_out_path": links.path(links.DESK_ARTICLE_TAKE_OUT_PATH, **values),
        "send_path": links.path(links.DESK_ARTICLE_SEND_PATH, **values),
    }


async def _list_page(
    desk: Desk, signed: SignedIn, q: str = "", page: int = 1, status: int = 200, **values: Any
) -> Response:
    found = await run_in_threadpool(articles, desk.engine, q, page)
    answer = desk.signed_in_page(
        signed,
        "articles.html",
        found=found,
        article_path=_article_path,
        url_path=links.DESK_ARTICLES_URL_PATH,
        upload_path=links.DESK_ARTICLES_UPLOAD_PATH,
        paste_path=links.DESK_ARTICLES_PASTE_PATH,
        **values,
    )
    answer.status_code = status
    return answer


@router.get(links.DESK_ARTICLES_PATH, response_class=HTMLResponse)
async def articles_page(request: Request, q: str = "", page: str = "1") -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    return await _list_page(desk, signed, q, _page_number(page))


async def _form(request: Request) -> tuple[Desk, SignedIn, dict[str, Any]] | Response:
    """The signed-in editor and the form's fields (urlencoded or multipart), or 403 for
    no session or a wrong CSRF token: then nothing is read or changed."""
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:  # refused before the body is read
        return desk.refused()
    fields: dict[str, Any] = {}
    async with request.form() as form:
        if not csrf_matches(signed.session, _text(form.get(CSRF_FIELD))):
            return desk.sessions.write(desk.refused(), signed.session)
        for name, value in form.items():
            if isinstance(value, UploadFile):  # read while the form's files are open
                data = await value.read(desk_articles.MAX_UPLOAD_BYTES + 1)
                fields[name] = Upload(value.filename or "", data)
            else:
                fields[name] = value
    return desk, signed, fields


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes  # at most one byte more than an upload may hold


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


async def _bring_in(
    request: Request, form_name: str, bring: Callable[[Desk, int | None, dict[str, Any]], Any]
) -> Response:
    found = await _form(request)
    if isinstance(found, Response):
        return found
    desk, signed, fields = found
    try:
        brought: BroughtIn = await bring(desk, signed.editor.id, fields)
    except MailerError as error:
        typed = {k: _text(v) for k, v in fields.items() if k != CSRF_FIELD}
        shown: dict[str, Any] = {"error": str(error), "failed": form_name, "typed": typed}
        return await _list_page(desk, signed, status=400, **shown)
    query = {"brought": brought.outcome.value}
    if brought.others or brought.skipped:
        query |= {"others": str(brought.others), "skipped": str(brought.skipped)}
    target = f"{_article_path(brought.article_id)}?{urlencode(query)}"
    return desk.sessions.write(desk.redirect(target), signed.session)


@router.post(links.DESK_ARTICLES_URL_PATH, response_class=HTMLResponse)
async def bring_in_url(request: Request) -> Response:
    async def bring(desk: Desk, editor_id: int | None, fields: dict[str, Any]) -> BroughtIn:
        url = _text(fields.get("url"))
        return await run_in_threadpool(
            desk_articles.bring_in_url, desk.engine, desk.settings, editor_id, url
        )

    return await _bring_in(request, "url", bring)


@router.post(links.DESK_ARTICLES_UPLOAD_PATH, response_class=HTMLResponse)
async def bring_in_file(request: Request) -> Response:
    async def bring(desk: Desk, editor_id: int | None, fields: dict[str, Any]) -> BroughtIn:
        upload = fields.get("file")
        if not isinstance(upload, Upload) or not upload.filename:
            raise MailerError("Choose a .txt, .md or .html file to upload first.")
        return await run_in_threadpool(
            desk_articles.bring_in_file,
            desk.engine,
            desk.settings,
            editor_id,
            upload.filename,
            upload.data,
        )

    return await _bring_in(request, "upload", bring)


@router.post(links.DESK_ARTICLES_PASTE_PATH, response_class=HTMLResponse)
async def bring_in_markdown(request: Request) -> Response:
    async def bring(desk: Desk, editor_id: int | None, fields: dict[str, Any]) -> BroughtIn:
        title, text = _text(fields.get("title")), _text(fields.get("markdown"))
        return await run_in_threadpool(
            desk_articles.bring_in_markdown, desk.engine, desk.settings, editor_id, title, text
        )

    return await _bring_in(request, "paste", bring)


def _number(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 10 else None


async def _article_page(
    desk: Desk, signed: SignedIn, article_id: int | None, status: int = 200, **values: Any
) -> Response:
    view: ArticleView | None = None
    if article_id is not None:
        view = await run_in_threadpool(
            desk_articles.article_page, desk.engine, desk.settings, article_id
        )
    if view is None or article_id is None:
        return desk.sessions.write(desk.pages("message.html", 404, **NOT_FOUND), signed.session)
    shown = {"brought": "", "others": 0, "skipped": 0, "done": ""} | values
    answer = desk.signed_in_page(signed, "article.html", view=view, **_paths(article_id), **shown)
    answer.status_code = status
    return answer


@router.get(links.DESK_ARTICLE_PATH, response_class=HTMLResponse)
async def article_page(
    request: Request,
    article_id: str,
    brought: str = "",
    others: str = "0",
    skipped: str = "0",
    done: str = "",
) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    return await _article_page(
        desk,
        signed,
        _number(article_id),
        brought=brought if brought in {b.value for b in desk_articles.Brought} else "",
        others=_number(others) or 0,
        skipped=_number(skipped) or 0,
        done=DONE.get(done, ""),
    )


async def _change(request: Request, article_id: str, change: Callable[..., str]) -> Response:
    """Run one change of the article for the signed-in editor; then its page, with what
    the change did, or the page again with what was wrong."""
    found = await _form(request)
    if isinstance(found, Response):
        return found
    desk, signed, fields = found
    number = _number(article_id)
    if number is None:
        return desk.sessions.write(desk.pages("message.html", 404, **NOT_FOUND), signed.session)
    try:
        done = await run_in_threadpool(change, desk, signed.editor.id, number, fields)
    except MailerError as error:
        return await _article_page(desk, signed, number, 400, error=str(error))
    target = f"{_article_path(number)}?{urlencode({'done': done})}"
    return desk.sessions.write(desk.redirect(target), signed.session)


@router.post(links.DESK_ARTICLE_EDIT_PATH, response_class=HTMLResponse)
async def edit_article(request: Request, article_id: str) -> Response:
    def change(desk: Desk, editor_id: int | None, number: int, fields: dict[str, Any]) -> str:
        changed = desk_articles.edit(
            desk.engine,
            desk.settings,
            editor_id,
            number,
            title=_text(fields.get("title")),
            summary=_text(fields.get("summary")),
            published=_text(fields.get("published")),
        )
        return "edited" if changed else "unchanged"

    return await _change(request, article_id, change)


def _block(fields: dict[str, Any]) -> tuple[int, str]:
    """The block a form names: its index (-1, which names none, when mangled) and key."""
    index = _number(_text(fields.get("index")))
    return -1 if index is None else index, _text(fields.get("key"))


@router.post(links.DESK_ARTICLE_PUT_BACK_PATH, response_class=HTMLResponse)
async def put_back(request: Request, article_id: str) -> Response:
    def change(desk: Desk, editor_id: int | None, number: int, fields: dict[str, Any]) -> str:
        desk_articles.put_back(desk.engine, editor_id, number, *_block(fields))
        return "put-back"

    return await _change(request, article_id, change)


@router.post(links.DESK_ARTICLE_TAKE_OUT_PATH, response_class=HTMLResponse)
async def take_out(request: Request, article_id: str) -> Response:
    def change(desk: Desk, editor_id: int | None, number: int, fields: dict[str, Any]) -> str:
        desk_articles.take_out(desk.engine, editor_id, number, *_block(fields))
        return "taken-out"

    return await _change(request, article_id, change)
