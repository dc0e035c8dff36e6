"""Curation changes as the admin API and the console make them: checked, stored, audited.

Each function takes the worker's ``Curation``, the input (JSON-like values) and who asks; bad input
raises ``InputError`` (a polite 4xx on every front end) before anything is written.
"""

from __future__ import annotations

import json

from bot.curation import faq as faq_files
from bot.curation.keywords import MENU_KEY
from bot.curation.service import Curation
from bot.curation.store import ACTIONS, MATCHES, Faq
from bot.curation.synonyms import SynonymGroupsError, check_groups, groups_from_setting
from bot.curation.unanswered import LOG_ROWS, REASONS, Group, collect, group
from bot.inputs import InputError, clean_text

MAX_QUESTION = 200
MAX_ANSWER = 1500  # an official answer must fit in one WeChat reply (2,048 bytes) with its frame
MAX_ALTERNATIVES = 50
MAX_WORD = 50
MAX_REPLY = 600
MAX_WORDS_FILE = 20_000


def _text(body: dict, name: str, limit: int, what: str, required: bool = True) -> str:
    value = body.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{name} 应为文字")
    value = clean_text(value.strip(), limit, name, what)
    if required and not value:
        raise InputError(f"请填写{what}（{name}）")
    return value


def _body(body: object) -> dict:
    if not isinstance(body, dict):
        raise InputError("请求体应为 JSON 对象")
    return body


# ------------------------------------------------------------------------- official answers


def faq_from(body: object) -> Faq:
    body = _body(body)
    alternatives = body.get("alternatives", []) or []
    if not isinstance(alternatives, list) or not all(isinstance(a, str) for a in alternatives):
        raise InputError("alternatives 应为文字列表")
    if len(alternatives) > MAX_ALTERNATIVES:
        raise InputError(f"其他问法最多 {MAX_ALTERNATIVES} 条")
    alts = [clean_text(a.strip(), MAX_QUESTION, "alternatives", "其他问法") for a in alternatives]
    question = _text(body, "question", MAX_QUESTION, "问题")
    return Faq(id=0, question=question, alternatives=[a for a in dict.fromkeys(alts) if a and a != question],
               answer=_text(body, "answer", MAX_ANSWER, "答案"), source=_text(body, "source", 200, "出处", False))


def add_faq(curation: Curation, body: object, who: str) -> int:
    item = curation.embed_faq(faq_from(body))
    (faq_id,) = curation.store.add_faqs([item], who)
    curation.audit(who, "add_faq", f"faq {faq_id}", item.question[:100])
    return faq_id


def update_faq(curation: Curation, faq_id: int, body: object, who: str) -> bool:
    item = curation.embed_faq(faq_from(body))
    item.id = faq_id
    ok = curation.store.update_faq(item, who)
    curation.audit(who, "update_faq", f"faq {faq_id}", item.question[:100] if ok else "refused: not found")
    return ok


def delete_faq(curation: Curation, faq_id: int, who: str) -> bool:
    ok = curation.store.delete_faq(faq_id)
    curation.audit(who, "delete_faq", f"faq {faq_id}", "deleted" if ok else "refused: not found")
    return ok


def import_faqs(curation: Curation, name: str, data: bytes, who: str, replace: bool) -> list[int]:
    try:
        items = faq_files.read_file(name, data)
    except faq_files.FaqFileError as exc:
        curation.audit(who, "import_faq", name[:100], f"refused: {exc}")
        raise InputError(str(exc)) from exc
    checked = [faq_from(f.to_json()) for f in items]  # the same limits as one pair
    ids = curation.store.add_faqs(curation.embed_faqs(checked), who, replace_all=replace)
    curation.audit(who, "import_faq", name[:100], f"{len(ids)} pairs" + (", replacing all" if replace else ""))
    return ids


# -------------------------------------------------------------------------- sensitive words


def word_pair(body: object) -> tuple[str, str]:
    body = _body(body)
    word = _text(body, "word", MAX_WORD, "敏感词")
    action = body.get("action", "mask")
    if action not in ACTIONS:
        raise InputError("action 应为 block（拦截提问）或 mask（回复中以＊显示）")
    return word, str(action)


def add_word(curation: Curation, body: object, who: str) -> int:
    word, action = word_pair(body)
    (word_id,) = curation.store.add_words([(word, action)], who)
    curation.audit(who, "add_sensitive_word", f"word {word_id}", action)
    return word_id


def import_words(curation: Curation, data: bytes, default_action: str, who: str) -> int:
    """A word file: UTF-8 (or GBK) text, one word a line, optionally followed by block or mask."""
    if default_action not in ACTIONS:
        raise InputError("action 应为 block 或 mask")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise InputError("词表文件应为 UTF-8 或 GBK 编码的文本") from exc
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").replace("，", " ").replace("\t", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        action = parts[1].lower() if len(parts) > 1 else default_action
        if action not in ACTIONS or len(parts) > 2 or len(parts[0]) > MAX_WORD:
            raise InputError(f"第 {number} 行应为“词语”或“词语 block/mask”")
        pairs.append((parts[0], action))
    if not pairs or len(pairs) > MAX_WORDS_FILE:
        raise InputError(f"词表应有 1 到 {MAX_WORDS_FILE} 个词")
    curation.store.add_words(pairs, who)
    curation.audit(who, "import_sensitive_words", None, f"{len(pairs)} words")
    return len(pairs)


def delete_word(curation: Curation, word_id: int, who: str) -> bool:
    word = curation.store.delete_word(word_id)
    curation.audit(who, "delete_sensitive_word", f"word {word_id}", "deleted" if word else "refused: not found")
    return word is not None


# -------------------------------------------------------------------------- keyword replies


def add_keyword(curation: Curation, body: object, who: str) -> int:
    body = _body(body)
    keyword = _text(body, "keyword", MAX_WORD, "关键词")
    match = body.get("match", "exact")
    if match not in MATCHES:
        raise InputError("match 应为 exact（完全一致）或 contains（包含）")
    reply = _text(body, "reply", MAX_REPLY, "回复内容")
    keyword_id = curation.store.add_keyword(keyword, str(match), reply, who)
    curation.audit(who, "add_keyword_reply", f"keyword {keyword_id}", f"{match}: {keyword}")
    return keyword_id


def delete_keyword(curation: Curation, keyword_id: int, who: str) -> bool:
    keyword = curation.store.delete_keyword(keyword_id)
    curation.audit(who, "delete_keyword_reply", f"keyword {keyword_id}",
                   "deleted" if keyword else "refused: not found")
    return keyword is not None


# --------------------------------------------------------------------- settings, synonyms


def settings_json(curation: Curation) -> dict:
    stored = curation.store.settings()
    return {"welcome": stored.get("welcome", ""), "menu": json.loads(stored.get("menu") or "{}")}


def put_settings(curation: Curation, body: object, who: str) -> dict:
    body = _body(body)
    values: dict[str, str] = {}
    if "welcome" in body:
        values["welcome"] = _text(body, "welcome", MAX_REPLY, "欢迎语", required=False)
    if "menu" in body:
        menu = body["menu"]
        if not isinstance(menu, dict) or not all(isinstance(k, str) and MENU_KEY.fullmatch(k) and isinstance(v, str)
                                                 for k, v in menu.items()):
            raise InputError("menu 应为 {\"菜单 KEY\": \"回复内容\"}，KEY 由字母、数字、_ 或 - 组成")
        values["menu"] = json.dumps({k.upper(): clean_text(v.strip(), MAX_REPLY, "menu", "菜单回复")
                                     for k, v in menu.items() if v.strip()}, ensure_ascii=False)
    if not values:
        raise InputError("请提交 welcome（关注欢迎语）或 menu（菜单回复）")
    curation.store.put_settings(values)
    curation.audit(who, "update_settings", None, "set " + ", ".join(sorted(values)))
    return settings_json(curation)


def synonym_groups(curation: Curation) -> list[list[str]]:
    return groups_from_setting(curation.store.settings().get("synonyms"))


def put_synonyms(curation: Curation, body: object, who: str) -> list[list[str]]:
    body = _body(body)
    try:
        groups = check_groups(body.get("groups"))
    except SynonymGroupsError as exc:
        raise InputError(str(exc)) from exc
    curation.store.put_settings({"synonyms": json.dumps(groups, ensure_ascii=False)})
    curation.audit(who, "update_synonyms", None, f"{len(groups)} groups")
    return groups


# ----------------------------------------------------------------------------- unanswered


def unanswered_groups(curation: Curation, log_rows: list, useless: list[dict]) -> list[Group]:
    """``log_rows``: query-log entries (``bot.store.LogEntry``); ``useless``: questions marked 没用."""
    rows = [(e.question, REASONS[e.kind], e.at) for e in log_rows if e.kind in REASONS]
    rows += [(u["question"], "useless", u["at"]) for u in useless]
    dismissed = curation.store.dismissed()
    covered = curation.faqs.exact
    entries = collect(rows, lambda key: key in dismissed or key in covered)
    return group(entries, curation.question_vector)


def find_group(curation: Curation, group_id: str) -> Group:
    log_rows = curation.bot_store.recent_queries(limit=LOG_ROWS)
    found = [g for g in unanswered_groups(curation, log_rows, curation.store.useless_questions(LOG_ROWS))
             if g.id == group_id]
    if not found:
        raise InputError("没有这个问题分组（可能已处理）", 404)
    return found[0]


def faq_from_group(curation: Curation, group_id: str, body: object, who: str) -> int:
    """An official answer from a group in one step: its questions become the pair's phrasings."""
    body = _body(body)
    grp = find_group(curation, group_id)
    question = str(body.get("question") or grp.question)
    others = [e.question for e in grp.entries if e.question != question]
    return add_faq(curation, {"question": question, "alternatives": others[:MAX_ALTERNATIVES],
                              "answer": body.get("answer"), "source": body.get("source", "")}, who)


def dismiss_group(curation: Curation, group_id: str, who: str) -> int:
    grp = find_group(curation, group_id)
    curation.store.dismiss([e.key for e in grp.entries], who)
    curation.audit(who, "dismiss_unanswered", f"group {group_id}", f"{len(grp.entries)} questions out of scope")
    return len(grp.entries)
