"""Keyword replies (关键词回复), the subscribe welcome and menu CLICK replies an admin sets.

An ``exact`` keyword answers a message that is the keyword (ignoring case, width, spaces and end
punctuation); a ``contains`` keyword answers any message containing it. Exact keywords win, then the
longest contained keyword, then the oldest.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

EXACT, CONTAINS = "exact", "contains"
EDGE_PUNCTUATION = re.compile(r"^[\s\W_]+|[\s\W_]+$")
MENU_KEY = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def keyword_key(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return EDGE_PUNCTUATION.sub("", " ".join(text.split()))


@dataclass(frozen=True)
class KeywordReply:
    id: int
    keyword: str
    match: str
    reply: str


class KeywordReplies:
    def __init__(self, rows: list[dict]) -> None:
        self.exact: dict[str, KeywordReply] = {}
        self.contains: list[tuple[str, KeywordReply]] = []
        for row in rows:
            item = KeywordReply(int(row["id"]), row["keyword"], row["match"], row["reply"])
            key = keyword_key(item.keyword)
            if not key:
                continue
            if item.match == EXACT:
                self.exact.setdefault(key, item)
            else:
                self.contains.append((key, item))
        self.contains.sort(key=lambda pair: (-len(pair[0]), pair[1].id))

    def match(self, text: str) -> KeywordReply | None:
        key = keyword_key(text)
        if not key:
            return None
        hit = self.exact.get(key)
        if hit is not None:
            return hit
        return next((item for word, item in self.contains if word in key), None)


def menu_from_setting(value: str | None) -> dict[str, str]:
    """The stored menu replies: {CLICK key (upper case): reply}."""
    if not value:
        return {}
    data = json.loads(value)
    return {str(k).upper(): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
