"""Provider errors normalised to one hierarchy (DESIGN §1), with the code tables of the
research brief. Each error knows its provider, code, HTTP status, request id and whether a
retry can help. `user_message()` is short, Chinese first, and never contains a key.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from typing import Any


class ProviderError(Exception):
    kind = "error"
    retryable = False
    zh = "模型服务出错"
    en = "the model service failed"

    def __init__(
        self,
        message: str = "",
        *,
        provider: str | None = None,
        code: str | int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(redact(message) or self.en)
        self.message = redact(message)
        self.provider = provider
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable

    def scrub(self, *secrets: str | None) -> ProviderError:
        """Remove the caller's own credentials from the message, whatever words a server put around
        them (`redact` only catches key-shaped text). Secrets shorter than 8 characters are ignored."""
        known = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
        if known:
            self.message = _scrub(self.message, known)
            self.args = tuple(_scrub(a, known) if isinstance(a, str) else a for a in self.args)
        return self

    def user_message(self) -> str:
        who = f"{self.provider}: " if self.provider else ""
        code = f" ({self.code})" if self.code not in (None, "") else ""
        return f"{who}{self.zh} / {self.en}{code}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, code={self.code!r}, "
            f"http_status={self.http_status!r}, request_id={self.request_id!r}, message={self.message!r})"
        )


class AuthError(ProviderError):
    kind = "auth"
    zh = "密钥无效或无权限，请检查 API Key 配置"
    en = "authentication failed, check the API key"


class RateLimited(ProviderError):
    kind = "rate_limited"
    retryable = True
    zh = "请求过于频繁或额度已用完"
    en = "rate limited"

    def __init__(self, message: str = "", *, retry_after: float | None = None, daily: bool = False, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.daily = daily
        if daily:
            self.retryable = False
            self.zh = "今日额度已用完"
            self.en = "daily quota used up"


class Timeout(ProviderError):
    kind = "timeout"
    retryable = True
    zh = "模型响应超时"
    en = "the model timed out"


class ProviderUnavailable(ProviderError):
    kind = "unavailable"
    retryable = True
    zh = "模型服务暂时不可用"
    en = "the model service is unavailable"


class BadRequest(ProviderError):
    kind = "bad_request"
    zh = "请求无效（可能是内容过长或参数不被支持）"
    en = "the request was rejected as invalid"


class ContentFiltered(ProviderError):
    kind = "content_filtered"
    zh = "内容未通过服务商的审核"
    en = "blocked by the provider's content filter"


class StreamInterrupted(ProviderError):
    """The stream died after text reached the user: never retried elsewhere behind their back."""

    kind = "interrupted"
    zh = "回答中途中断，以上内容可能不完整"
    en = "the answer was cut off; what is shown may be incomplete"


ERROR_KINDS = {c.kind: c for c in (AuthError, RateLimited, Timeout, ProviderUnavailable, BadRequest, ContentFiltered)}

# --- key redaction ------------------------------------------------------------------------

_SECRET_RE = re.compile(
    r"(?i)"
    # `api_key=…`, `"api key": "…"`, `client_secret=…`, `Authorization: Bearer …`, `access_token=…`
    r"(?P<keep>(?:api[_\- ]?key|[a-z_]*secret|authorization|password|passwd|token)[\"']?\s*[:=]\s*[\"']?"
    r"(?:bearer\s+|basic\s+)?|bearer\s+)(?P<val>[^\s\"'&,}]{6,})"
    r"|(?P<userinfo>://[^/\s:@]+:)[^/\s@]+(?=@)"  # https://user:password@host
    r"|sk-[A-Za-z0-9_\-]{8,}|bce-v3/[A-Za-z0-9_/\-]+"
)


def redact(text: str | None, limit: int | None = 500) -> str:
    """Remove anything that looks like a credential from a message (and cap it at `limit` characters)."""
    if not text:
        return ""

    def _sub(m: re.Match[str]) -> str:
        if m.group("keep"):
            return m.group("keep") + "***"
        if m.group("userinfo"):
            return m.group("userinfo") + "***"
        return "***"

    out = _SECRET_RE.sub(_sub, str(text))
    return out[:limit] if limit is not None else out


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# --- code tables ----------------------------------------------------------------------------

SPARK_CODES: dict[int, tuple[type[ProviderError], dict[str, Any]]] = {}
for _c in (10015, 10016, 11200):
    SPARK_CODES[_c] = (AuthError, {})
for _c in (10007, 11202, 11203, 10006):
    SPARK_CODES[_c] = (RateLimited, {})
SPARK_CODES[11201] = (RateLimited, {"daily": True})
for _c in (10013, 10014, 10019, 10021):
    SPARK_CODES[_c] = (ContentFiltered, {})
for _c in (10003, 10004, 10005, 10163, 10907):
    SPARK_CODES[_c] = (BadRequest, {})
for _c in (10000, 10001, 10002, 10008, 10009, 10010, 10011, 10012, 10110, 10222):
    SPARK_CODES[_c] = (ProviderUnavailable, {})

QIANFAN_CODES: dict[str, tuple[type[ProviderError], dict[str, Any]]] = {
    "access_denied": (AuthError, {}),
    "invalid_api_key": (AuthError, {}),
    "unauthorized": (AuthError, {}),
    "rpm_rate_limit_exceeded": (RateLimited, {}),
    "tpm_rate_limit_exceeded": (RateLimited, {}),
    "rate_limit_exceeded": (RateLimited, {}),
    "qps_rate_limit_exceeded": (RateLimited, {}),
    "malformed_json": (BadRequest, {}),
    "invalid_model": (BadRequest, {}),
    "invalid_messages": (BadRequest, {}),
    "characters_too_long": (BadRequest, {}),
    "tokens_too_long": (BadRequest, {}),
    "server_high_load": (ProviderUnavailable, {}),
    "internal_error": (ProviderUnavailable, {}),
}

DASHSCOPE_CODES: dict[str, tuple[type[ProviderError], dict[str, Any]]] = {
    "invalidapikey": (AuthError, {}),
    "invalid_api_key": (AuthError, {}),
    "accessdenied": (AuthError, {}),
    "accessdenied.unpurchased": (AuthError, {}),
    "access_denied": (AuthError, {}),
    "arrearage": (AuthError, {}),
    "throttling": (RateLimited, {}),
    "throttling.ratequota": (RateLimited, {}),
    "throttling.allocationquota": (RateLimited, {}),
    "limit_requests": (RateLimited, {}),
    "insufficient_quota": (RateLimited, {"daily": True}),
    "datainspectionfailed": (ContentFiltered, {}),
    "data_inspection_failed": (ContentFiltered, {}),
    "invalidparameter": (BadRequest, {}),
    "invalid_parameter_error": (BadRequest, {}),
    "requesttimeout": (Timeout, {}),
    "toolarge": (BadRequest, {}),
}


def from_code(
    code: Any, message: str = "", *, provider: str | None = None, http_status: int | None = None,
    request_id: str | None = None, retry_after: float | None = None,
) -> ProviderError:
    """Map a provider's body code (int or string) to an error; fall back to the HTTP status."""
    kw: dict[str, Any] = {"provider": provider, "code": code, "http_status": http_status, "request_id": request_id}
    cls: type[ProviderError] | None = None
    extra: dict[str, Any] = {}
    code_int = _as_int(code)
    if code_int is not None and code_int in SPARK_CODES:
        cls, extra = SPARK_CODES[code_int]
    elif isinstance(code, str):
        key = code.strip().lower()
        if key in QIANFAN_CODES:
            cls, extra = QIANFAN_CODES[key]
        elif key in DASHSCOPE_CODES:
            cls, extra = DASHSCOPE_CODES[key]
            if key == "throttling.allocationquota" and "free" in message.lower():
                extra = {"daily": True}
        elif "content_filter" in key or "sensitive" in key:
            cls = ContentFiltered
    if cls is None:
        status = code_int if code_int is not None and 400 <= code_int < 600 else http_status
        if not status or status < 400:  # an error inside a 200 body whose code we do not know
            status = 500
        return from_status(status, message, provider=provider, code=code, request_id=request_id,
                           retry_after=retry_after)
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after, **extra, **kw)
    return cls(message, **kw)


def from_status(
    status: int, message: str = "", *, provider: str | None = None, code: Any = None,
    request_id: str | None = None, retry_after: float | None = None,
) -> ProviderError:
    kw: dict[str, Any] = {"provider": provider, "code": code, "http_status": status, "request_id": request_id}
    low = message.lower()
    if status in (401, 403):
        return AuthError(message, **kw)
    if status == 429:
        daily = any(w in low for w in ("daily", "per day", "quota exceeded", "free allocated", "insufficient_quota"))
        return RateLimited(message, retry_after=retry_after, daily=daily, **kw)
    if status in (408, 504):
        return Timeout(message, **kw)
    if status >= 500:
        return ProviderUnavailable(message, **kw)
    if "content" in low and ("filter" in low or "inspection" in low):
        return ContentFiltered(message, **kw)
    return BadRequest(message, **kw)


def _as_int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def parse_retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """`retry-after-ms`, else `retry-after` (seconds or an HTTP date), clamped to 0..120 s.
    A header that cannot be read is skipped, not allowed to hide the other one."""
    from email.utils import parsedate_to_datetime  # lazily: only for HTTP-date Retry-After
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            raw = headers.get(name)
        except AttributeError:
            return None
        if raw is None:
            continue
        raw = str(raw).strip()
        try:
            value = float(raw) / scale
        except ValueError:
            if scale != 1.0:
                continue
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            value = when.timestamp() - (time.time() if now is None else now)
        if not math.isfinite(value):
            continue
        return min(max(value, 0.0), 120.0)
    return None


def error_from_body(body: Any, *, provider: str | None, http_status: int | None = None,
                    request_id: str | None = None, retry_after: float | None = None) -> ProviderError | None:
    """Find an error hidden in a JSON body: Spark `code`, `{"error": ...}` (nested or flat), DashScope `code`."""
    if not isinstance(body, dict):
        return None
    rid = request_id or body.get("sid") or body.get("request_id") or body.get("id")
    if body.get("error"):
        err = body["error"]
        if isinstance(err, dict):
            code = err.get("code") or err.get("type")
            msg = str(err.get("message") or err.get("msg") or "")
        else:
            code, msg = None, str(err)
        return from_code(code, msg, provider=provider, http_status=http_status, request_id=rid,
                         retry_after=retry_after)
    if body.get("object") == "error":  # older vLLM: flat
        return from_code(body.get("code"), str(body.get("message", "")), provider=provider,
                         http_status=_as_int(body.get("code")) or http_status, request_id=rid)
    code = body.get("code")
    if code not in (None, 0, "0", "", "Success", "success") and ("message" in body or "sid" in body):
        return from_code(code, str(body.get("message", "")), provider=provider, http_status=http_status,
                         request_id=rid, retry_after=retry_after)
    if "error_code" in body:  # Baidu v1 style
        return from_code(body.get("error_code"), str(body.get("error_msg", "")), provider=provider,
                         http_status=http_status, request_id=rid)
    return None
