"""Untrusted input at the front ends: JSON bodies, file names, free text, and the limits that bound them.

Each check returns a clean value or raises ``InputError``, whose text is the polite Chinese message the
sender reads and whose ``status`` is the 4xx that fits (413 for a size limit, 400 for the rest). A refusal
for a size limit names the setting that changes it. ``init_app`` makes every front end answer an
``InputError`` or an HTTP error in its own format: JSON under /api and /admin/api, plain text on /wechat,
an HTML page in the console.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from flask import Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

MAX_JSON_DEPTH = 8  # /api/ask takes a flat object; question-set lines are flat too
FILE_NAME_MAX_BYTES = 180  # UTF-8 bytes; the library folder adds a prefix and must stay under 255
TITLE_MAX_CHARS = 200
JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')  # strings (possibly unterminated) and brackets
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")


class InputError(ValueError):
    """Input refused before any work or any write; the message is shown to the sender as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def setting_hint(setting: str) -> str:
    """The sentence that tells an operator which setting moves a limit."""
    return f"（上限可通过设置 FLASK_{setting} 调整）"


def size_text(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):g} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:g} KB"
    return f"{n_bytes} 字节"


def too_large(what: str, limit: int, setting: str, unit: str = "bytes") -> InputError:
    amount = size_text(limit) if unit == "bytes" else f"{limit:,} {unit}"
    return InputError(f"{what}超过 {amount} 的上限{setting_hint(setting)}", 413)


# ------------------------------------------------------------------------------------ JSON


def json_depth(text: str) -> int:
    """How deeply ``text`` nests arrays and objects, counting brackets outside strings as a parser does."""
    depth = deepest = 0
    for token in JSON_TOKEN.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif mark in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, what: str = "请求体") -> object:
    """Parse JSON whose nesting is bounded (a deep document would exhaust the parser's recursion)."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise InputError(f"{what}的 JSON 嵌套超过 {MAX_JSON_DEPTH} 层，请检查格式")
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts
        raise InputError(f"{what}不是有效的 JSON") from exc


def read_json_body(max_bytes: int, setting: str) -> object:
    """The request body as JSON, read no further than ``max_bytes``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large("请求体", max_bytes, setting)
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large("请求体", max_bytes, setting)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("请求体应为 UTF-8 编码的 JSON") from exc
    return parse_json(text)


# ------------------------------------------------------------------------------------ text


def clean_text(value: str, max_chars: int, setting: str, what: str) -> str:
    """Free text from a sender: no lone surrogates, no more than ``max_chars`` characters."""
    if SURROGATE.search(value):
        raise InputError(f"{what}含有无效的字符（不成对的代理码位），请检查编码")
    if len(value) > max_chars:
        raise too_large(what, max_chars, setting, unit="字")
    return value


def clean_title(value: str | None) -> str | None:
    """A title typed in a form: control characters dropped, length bounded; empty means none."""
    if value is None:
        return None
    value = " ".join(CONTROL.sub(" ", SURROGATE.sub("", value)).split())
    if len(value) > TITLE_MAX_CHARS:
        raise InputError(f"标题过长：最多 {TITLE_MAX_CHARS} 个字")
    return value or None


def clean_label(value: str, max_chars: int = 64) -> str:
    """A short name from a header (who did an admin action): printable and bounded."""
    return CONTROL.sub("", SURROGATE.sub("", value))[:max_chars]


def clean_file_name(name: str | None) -> str:
    """The last path part of an uploaded file's name, printable and short enough to store.

    NUL and other control or format characters (e.g. a right-to-left override that disguises the
    extension) are dropped, both / and \\ end a folder, leading dots and spaces go (no hidden files, no
    ``..``), and an overlong name is shortened in its stem so that the extension stays.
    """
    name = unicodedata.normalize("NFC", SURROGATE.sub("", name or ""))
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    name = PureWindowsPath(PurePosixPath(name).name).name.strip().lstrip(". ").rstrip(". ")
    if not name:
        raise InputError("文件名无效：请给文件起一个正常的名字后再上传")
    if len(name.encode("utf-8")) > FILE_NAME_MAX_BYTES:
        path = PurePosixPath(name)
        suffix = path.suffix if len(path.suffix.encode("utf-8")) <= 16 else ""
        stem = name[: len(name) - len(suffix)] if suffix else name
        room = FILE_NAME_MAX_BYTES - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ")
        name = stem + suffix
    return name


def question_set_lines(data: bytes, name: str) -> str:
    """A question-set upload (JSON lines) checked before it is written: UTF-8, every line bounded JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} 应为 UTF-8 编码的 JSONL 文件") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            parse_json(line, what=f"{name}:{number} 这一行")
    return text


# --------------------------------------------------------------------------- error answers


HTTP_MESSAGES = {
    400: "请求格式不正确，请检查后重试",
    401: "需要登录或提供令牌",
    403: "没有权限访问",
    404: "没有找到要访问的页面或资源",
    405: "不支持这种请求方式",
    408: "请求超时，请重试",
    409: "与现有内容冲突",
    411: "请求缺少长度信息",
    413: "请求内容过大",
    414: "请求地址过长",
    415: "不支持的内容类型",
    429: "请求过于频繁，请稍后再试",
    431: "请求头过大",
}


def error_response(message: str, status: int) -> Response | tuple:
    """``message`` in the format of the front end that was asked."""
    path = request.path
    if path.startswith(("/api/", "/admin/api/")):
        return jsonify(error=message), status
    if path.startswith("/console"):
        return render_template("console/error.html", message=message, status=status), status
    return Response(message, status=status, mimetype="text/plain")


def init_app(app: Flask) -> None:
    """Polite Chinese answers for refused input and HTTP errors on every front end."""

    @app.errorhandler(InputError)
    def input_error(exc: InputError):
        return error_response(str(exc), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        if status == 413:
            cap = current_app.config.get("MAX_CONTENT_LENGTH")
            if cap and (request.content_length or 0) > cap:
                message = str(too_large("上传内容", int(current_app.config["MAX_UPLOAD_BYTES"]), "MAX_UPLOAD_BYTES"))
            else:  # Werkzeug's own form limits: a text field over 500 KB, over 1,000 fields
                message = "表单中的文字过长或字段过多，请精简后重试"
        elif exc.description and exc.description != type(exc).description:
            message = exc.description  # ours: abort(400, description="…") carries the Chinese text
        else:
            message = HTTP_MESSAGES.get(status, "服务暂时不可用，请稍后再试" if status >= 500 else "请求无法处理")
        return error_response(message, status)
