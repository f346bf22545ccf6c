"""Keeping channels' secrets out of what people read: a notification's `last_error` (shown by the API) and logs.

Chat robots and many webhook receivers carry their credential in the URL: Slack
`hooks.slack.com/services/T…/B…/SECRET`, Feishu `open.feishu.cn/open-apis/bot/v2/hook/TOKEN`, Teams
`…/workflows/ID/…?sig=SECRET`, DingTalk `?access_token=TOKEN`, WeCom `?key=KEY`, or a password in
`https://user:password@host/`. Of each URL, `redact` keeps what tells an admin which hook it is, and writes `***`
for the rest:

    https://hooks.slack.com/services/T0***
    https://open.feishu.cn/open-apis/bot/v2/hook/8c6d***
    https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***
    https://facmon:***@ops.example.com/facmon

The scheme, user name, host and port stay; the path stays up to its first part that is not a plain route word
(lower case letters, `-`, `_`, `.`, a version number such as `v2`), of which at most a quarter, and no more than
four characters, is shown; every query value and any fragment go. Redacting redacted text changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

MASK = "***"

# A URL in running text. Quotes, angle brackets and parentheses end it: exception texts put URLs between them.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()]+")
# The last `@` before the path ends the user info: a password may hold an unescaped `@`.
_URL_PARTS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:(?P<userinfo>[^/?#]*)@)?(?P<host>[^/?#]*)"
    r"(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?",
    re.DOTALL,
)
# HTTP libraries log and raise with the request's path alone: `"POST /services/T…/B…/SECRET HTTP/1.1" 500`.
_BARE_PATH = re.compile(r"\b((?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) |url: )(/[^\s'\"]*)")
# Query parameters that carry credentials, wherever they turn up without their URL.
_SECRET_PARAMETER = re.compile(
    r"\b(access_token|token|key|api_key|apikey|sign|sig|signature|secret|password|passwd)=(?!\*\*\*)([^&\s'\"]+)",
    re.IGNORECASE,
)
_ROUTE_WORD = re.compile(r"[a-z][a-z_.-]*[0-9]{0,2}")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.~%-]{1,40}")
# Shorter known secrets are left alone: replacing every "ab" in a text would garble it and hide nothing.
_SHORTEST_SECRET = 4


def redact(text: str, *, urls: Iterable[str] = (), secrets: Iterable[str] = ()) -> str:
    """`text` with the secrets of the URLs in it replaced by `***`.

    `urls` are URLs the caller knows (a channel's own): their secret parts are replaced wherever they appear,
    also without the rest of the URL. `secrets` (passwords, signing keys) are replaced wherever they appear.
    """
    pieces: dict[str, str] = {}
    for url in urls:
        pieces.update(_secret_pieces(url))
    for secret in secrets:
        if len(secret) >= _SHORTEST_SECRET:
            pieces[secret] = MASK
    for piece in sorted(pieces, key=len, reverse=True):  # a whole URL before the parts it contains
        text = text.replace(piece, pieces[piece])
    text = _URL_IN_TEXT.sub(lambda m: _without_punctuation(m.group(), redact_url), text)
    text = _BARE_PATH.sub(lambda m: m.group(1) + _without_punctuation(m.group(2), _redact_target), text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}={MASK}", text)


def redact_url(url: str) -> str:
    """The URL as an admin may see it: scheme, user name, host, port, the start of the path."""
    parts = _URL_PARTS.fullmatch(url)
    if parts is None:
        return MASK
    shown = parts["scheme"]
    if parts["userinfo"] is not None:
        user, colon, _password = parts["userinfo"].partition(":")
        # Without a password, the user info is often the token itself.
        shown += f"{user}:{MASK}@" if colon and user != MASK else f"{MASK}@"
    shown += parts["host"] + _redact_path(parts["path"])
    if parts["query"] is not None:
        shown += "?" + _redact_query(parts["query"])
    if parts["fragment"] is not None:
        shown += "#" + MASK
    return shown


def _without_punctuation(found: str, redact_part: Callable[[str], str]) -> str:
    # A full stop or a comma after a URL or path in a sentence is not part of it.
    stripped = found.rstrip(".,;:")
    return redact_part(stripped) + found[len(stripped) :]


def _redact_target(target: str) -> str:
    path, question, query = target.partition("?")
    return _redact_path(path) + (("?" + _redact_query(query)) if question else "")


def _secret_start(path: str) -> int | None:
    """Where the first part of `path` that may be a secret starts; None when all its parts are route words."""
    start = 0
    for segment in path.split("/"):
        if segment and not (len(segment) <= 12 and _ROUTE_WORD.fullmatch(segment)):
            return start
        start += len(segment) + 1
    return None


def _redact_path(path: str) -> str:
    start = _secret_start(path)
    if start is None:
        return path
    segment = path[start:].split("/", 1)[0]
    if MASK in segment:  # redacted before
        return path[: start + len(segment)]
    return path[:start] + segment[: min(4, len(segment) // 4)] + MASK


def _redact_query(query: str) -> str:
    redacted = []
    for item in query.split("&"):
        name, equals, _value = item.partition("=")
        redacted.append(f"{name}={MASK}" if equals and _PARAMETER_NAME.fullmatch(name) else MASK)
    return "&".join(redacted)


def _secret_pieces(url: str) -> dict[str, str]:
    """What to replace, and by what, for a known URL: the URL, its path from the first secret part on, each long
    part of that, each query value and the password."""
    parts = _URL_PARTS.fullmatch(url)
    if parts is None:
        return {url: MASK} if len(url) >= _SHORTEST_SECRET else {}
    pieces = {url: redact_url(url)}
    path = parts["path"]
    start = _secret_start(path)
    if start is not None:
        pieces[path[start:]] = _redact_path(path)[start:]
        for segment in path[start:].split("/"):
            if len(segment) >= 8:
                pieces.setdefault(segment, MASK)
    for item in (parts["query"] or "").split("&"):
        value = item.partition("=")[2]
        if len(value) >= _SHORTEST_SECRET:
            pieces.setdefault(value, MASK)
    password = (parts["userinfo"] or "").partition(":")[2]
    if len(password) >= _SHORTEST_SECRET:
        pieces.setdefault(password, MASK)
    return pieces
