"""查看原文: the link every answer ends with, and the mobile page it opens.

A link carries a signed token (itsdangerous) of three things: a prefix of the SHA-256 of the quoted
document's cleaned text and the passage's character offsets in it. The page resolves the token against
the index store's archive of document texts (``index.sources``), not against an index position, so a
link keeps showing the text it quoted after re-indexing, after the document is replaced, and after the
version that answered is pruned. Tokens cannot be forged or guessed (a changed offset breaks the signature).

The page is plain server-rendered HTML for WeChat's in-app browser: a viewport meta tag, no JavaScript,
no external assets, readable at 360 px. It shows the title, issuer, date, status and section path, then
the whole section with the passage in ``<mark id="quote">``; the link's ``#quote`` scrolls to it.
"""

from __future__ import annotations

import html
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Blueprint, Flask, render_template
from itsdangerous import BadSignature, Signer
from markupsafe import Markup

from bot.answer import chinese_date
from bot.store import BotStore
from index.chunk import Chunk
from index.metadata import STATUS_IN_FORCE
from index.sources import META_KEPT, section_of
from index.store import IndexStoreError

if TYPE_CHECKING:
    from bot.engine import Engine

bp = Blueprint("original", __name__, template_folder="templates")

KEY_PREFIX = 16  # hex characters of the text's SHA-256 a link carries (64 bits: no collision in a library)
SECRET_SETTING = "original_link_secret"
ANCHOR = "quote"
LINK_TEXT = "查看原文"
TOKEN = re.compile(r"^[0-9a-f]{16}\.[0-9a-z]{1,8}\.[0-9a-z]{1,8}\.[A-Za-z0-9_-]{10,60}$")
# A link inside a reply as WeChat shows it (tappable text); the console renders exactly these.
REPLY_LINK = re.compile(r'<a href="(https?://[^"<>\s]+)">([^<>]{1,20})</a>')



def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def link_secret(config: dict, store: BotStore) -> str:
    """``SECRET_KEY`` when set, else a random secret kept in the shared store (every worker signs alike)."""
    if config.get("SECRET_KEY"):
        return str(config["SECRET_KEY"])
    return store.setting_once(SECRET_SETTING, secrets.token_urlsafe(32))


class Links:
    """Makes and reads the signed tokens of 查看原文 links."""

    def __init__(self, secret: str, base_url: str | None) -> None:
        self.signer = Signer(secret, salt="original-text")
        self.base_url = (base_url or "").rstrip("/") or None

    def token(self, key: str, start: int, end: int) -> str:
        return self.signer.sign(f"{key[:KEY_PREFIX]}.{_b36(start)}.{_b36(end)}").decode()

    def read(self, token: str) -> tuple[str, int, int] | None:
        """(key prefix, start, end) of a genuine token, else None."""
        if not TOKEN.match(token):
            return None
        try:
            payload = self.signer.unsign(token).decode()
        except BadSignature:
            return None
        prefix, start, end = payload.split(".")
        return prefix, int(start, 36), int(end, 36)

    def url(self, chunk: Chunk, document: dict) -> str | None:
        """The public link for ``chunk`` of ``document`` (an index manifest entry), or None when the
        base URL is not set or the index predates text keys."""
        key = document.get("text_key")
        if not self.base_url or not key:
            return None
        return f"{self.base_url}/o/{self.token(key, chunk.start, chunk.end)}#{ANCHOR}"


def reply_html(text: str) -> Markup:
    """A reply as WeChat shows it, for the console: escaped text with its 查看原文 links tappable."""
    out, pos = [], 0
    for m in REPLY_LINK.finditer(text):
        out.append(html.escape(text[pos:m.start()], quote=False))
        out.append(f'<a href="{html.escape(m.group(1))}">{html.escape(m.group(2), quote=False)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:], quote=False))
    return Markup("".join(out))


@bp.get("/o/<token>")
def original(token: str):
    from bot.engine import get_engine

    engine = get_engine()
    found = engine.links.read(token)
    if found is None:
        return render_template("original/missing.html"), 404
    prefix, start, end = found
    record = engine.store.sources.find(prefix)
    section = section_of(record, start, end) if record else None
    if record is None or section is None:
        return render_template("original/missing.html"), 404
    current = _current_entry(engine, record["key"])
    superseded = current is None  # the text no longer serves: show what it was when quoted
    meta = dict(record.get("meta") or {}) if current is None else {k: current.get(k) for k in META_KEPT}
    latest = meta.get("latest") if meta.get("latest") != record.get("doc_id") else None
    return render_template(
        "original/page.html", title=record["title"], issuer=meta.get("issuer"), number=meta.get("number"),
        date=chinese_date(record.get("date")) if record.get("date") else None,
        status=meta.get("status") or STATUS_IN_FORCE, superseded=superseded,
        latest_title=meta.get("latest_title") if latest else None,
        latest_date=chinese_date(meta.get("latest_date")) if latest and meta.get("latest_date") else None,
        section=section, anchor=ANCHOR,
    )


def _current_entry(engine: Engine, key: str) -> dict | None:
    """The serving index's entry for the document with this text, if it still serves it."""
    try:
        documents = engine.current_index().manifest.get("documents", [])
    except IndexStoreError:  # no index serving: the archived metadata is all there is
        return None
    return next((d for d in documents if d.get("text_key") == key), None)


def check_base_url(url: str | None) -> str | None:
    """PUBLIC_BASE_URL must be an absolute http(s) URL (WeChat opens only those)."""
    if not url:
        return None
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"PUBLIC_BASE_URL must look like https://your.host (got {url!r})")
    return str(url).rstrip("/")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.filters["reply_html"] = reply_html
