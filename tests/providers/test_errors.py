"""Error normalisation: code tables, HTTP statuses, errors hidden in bodies, Retry-After,
and that no credential survives into a message."""

from __future__ import annotations

import pytest

from providers import errors as E

# ---- Spark business codes (WS frames and HTTP bodies) ---------------------------------------------

SPARK = [
    # auth / account
    (10015, E.AuthError, False), (10016, E.AuthError, False), (11200, E.AuthError, False),
    # rate limits: 11201 is the daily quota, the others pass
    (10007, E.RateLimited, False), (11202, E.RateLimited, False), (11203, E.RateLimited, False),
    (11201, E.RateLimited, True),
    # moderation
    (10013, E.ContentFiltered, False), (10014, E.ContentFiltered, False), (10019, E.ContentFiltered, False),
    (10021, E.ContentFiltered, False),
    # the request itself
    (10003, E.BadRequest, False), (10004, E.BadRequest, False), (10005, E.BadRequest, False),
    (10163, E.BadRequest, False), (10907, E.BadRequest, False),
    # the service
    (10000, E.ProviderUnavailable, False), (10008, E.ProviderUnavailable, False),
    (10012, E.ProviderUnavailable, False), (10110, E.ProviderUnavailable, False),
    (10222, E.ProviderUnavailable, False),
]


@pytest.mark.parametrize(("code", "cls", "daily"), SPARK, ids=[str(c) for c, _, _ in SPARK])
def test_spark_codes(code: int, cls: type[E.ProviderError], daily: bool) -> None:
    err = E.from_code(code, "msg", provider="spark", http_status=200, request_id="cha@dx")
    assert type(err) is cls
    assert (err.code, err.provider, err.request_id, err.http_status) == (code, "spark", "cha@dx", 200)
    if cls is E.RateLimited:
        assert err.daily is daily
        assert err.retryable is (not daily)  # a daily quota does not come back in seconds


@pytest.mark.parametrize("code", ["11202", " 11202 "])
def test_spark_code_as_string(code: str) -> None:
    assert type(E.from_code(code, provider="spark")) is E.RateLimited


def test_unknown_code_in_a_200_body_is_unavailable() -> None:
    err = E.from_code(10017, "clear history failed", http_status=200)
    assert type(err) is E.ProviderUnavailable and err.retryable and err.code == 10017


# ---- Qianfan v2 and DashScope string codes --------------------------------------------------------

QIANFAN = [
    ("rpm_rate_limit_exceeded", 429, E.RateLimited), ("tpm_rate_limit_exceeded", 429, E.RateLimited),
    ("qps_rate_limit_exceeded", 429, E.RateLimited),
    ("access_denied", 401, E.AuthError), ("invalid_api_key", 401, E.AuthError), ("unauthorized", 401, E.AuthError),
    ("malformed_json", 400, E.BadRequest), ("invalid_model", 400, E.BadRequest),
    ("invalid_messages", 400, E.BadRequest), ("characters_too_long", 400, E.BadRequest),
    ("tokens_too_long", 400, E.BadRequest),
    ("server_high_load", 503, E.ProviderUnavailable), ("internal_error", 500, E.ProviderUnavailable),
]


@pytest.mark.parametrize(("code", "status", "cls"), QIANFAN, ids=[c for c, _, _ in QIANFAN])
def test_qianfan_codes(code: str, status: int, cls: type[E.ProviderError]) -> None:
    body = {"error": {"code": code, "message": code, "type": "invalid_request_error"}, "id": "as-123"}
    err = E.error_from_body(body, provider="ernie", http_status=status)
    assert type(err) is cls
    assert err.code == code and err.request_id == "as-123" and err.http_status == status


DASHSCOPE = [
    ("InvalidApiKey", 401, E.AuthError, False), ("invalid_api_key", 401, E.AuthError, False),
    ("AccessDenied", 403, E.AuthError, False), ("AccessDenied.Unpurchased", 403, E.AuthError, False),
    ("Arrearage", 400, E.AuthError, False),
    ("Throttling", 429, E.RateLimited, False), ("Throttling.RateQuota", 429, E.RateLimited, False),
    ("limit_requests", 429, E.RateLimited, False), ("insufficient_quota", 429, E.RateLimited, True),
    ("DataInspectionFailed", 400, E.ContentFiltered, False),
    ("data_inspection_failed", 400, E.ContentFiltered, False),
    ("InvalidParameter", 400, E.BadRequest, False), ("invalid_parameter_error", 400, E.BadRequest, False),
    ("TooLarge", 413, E.BadRequest, False), ("RequestTimeOut", 408, E.Timeout, False),
]


@pytest.mark.parametrize(("code", "status", "cls", "daily"), DASHSCOPE, ids=[c for c, *_ in DASHSCOPE])
def test_dashscope_codes(code: str, status: int, cls: type[E.ProviderError], daily: bool) -> None:
    # compatible-mode shape
    compat = {"error": {"message": "m", "type": code, "param": None, "code": code}, "request_id": "ds-1"}
    # native shape
    native = {"code": code, "message": "m", "request_id": "ds-1"}
    for body in (compat, native):
        err = E.error_from_body(body, provider="qwen", http_status=status)
        assert type(err) is cls, body
        assert err.request_id == "ds-1"
        if cls is E.RateLimited:
            assert err.daily is daily


@pytest.mark.parametrize(
    ("message", "daily"),
    [("Allocated quota exceeded, please increase your quota limit.", False),
     ("Free allocated quota exceeded.", True)],
)
def test_dashscope_allocation_quota(message: str, daily: bool) -> None:
    err = E.from_code("Throttling.AllocationQuota", message, provider="qwen", http_status=429)
    assert type(err) is E.RateLimited and err.daily is daily


# ---- HTTP statuses ---------------------------------------------------------------------------------

STATUSES = [
    (400, E.BadRequest, False), (404, E.BadRequest, False), (413, E.BadRequest, False), (422, E.BadRequest, False),
    (401, E.AuthError, False), (403, E.AuthError, False),
    (429, E.RateLimited, True),
    (408, E.Timeout, True), (504, E.Timeout, True),
    (500, E.ProviderUnavailable, True), (502, E.ProviderUnavailable, True), (503, E.ProviderUnavailable, True),
]


@pytest.mark.parametrize(("status", "cls", "retryable"), STATUSES, ids=[str(s) for s, _, _ in STATUSES])
def test_http_statuses(status: int, cls: type[E.ProviderError], retryable: bool) -> None:
    err = E.from_status(status, "x", provider="p")
    assert type(err) is cls and err.retryable is retryable and err.http_status == status


def test_429_carries_retry_after_and_daily_wording() -> None:
    err = E.from_status(429, "rate limited", retry_after=3.0)
    assert isinstance(err, E.RateLimited) and err.retry_after == 3.0 and not err.daily
    daily = E.from_status(429, "You have exceeded your daily request limit")
    assert isinstance(daily, E.RateLimited) and daily.daily and not daily.retryable


def test_400_mentioning_content_inspection_is_content_filtered() -> None:
    assert type(E.from_status(400, "Content inspection failed")) is E.ContentFiltered


def test_unknown_string_code_falls_back_to_status() -> None:
    assert type(E.from_code("something_new", http_status=429)) is E.RateLimited
    assert type(E.from_code("something_new", http_status=503)) is E.ProviderUnavailable
    assert type(E.from_code("content_filter_triggered", http_status=400)) is E.ContentFiltered


# ---- bodies ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "status", "cls"),
    [
        ({"object": "error", "message": "too long", "type": "BadRequestError", "param": None, "code": 400}, 400,
         E.BadRequest),  # older vLLM, flat
        ({"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}}, 400, E.BadRequest),
        ({"error": "Unauthorized"}, 401, E.AuthError),  # vLLM --api-key
        ({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, 503,
         E.ProviderUnavailable),  # llama.cpp while loading
        ({"code": 11202, "message": "AppIdQpsOverFlowError", "sid": "cha1", "choices": []}, 200, E.RateLimited),
        ({"error": {"message": "engine crashed", "code": 500}}, 200, E.ProviderUnavailable),  # mid-stream
    ],
    ids=["vllm-flat", "vllm-nested", "vllm-unauthorized", "llamacpp-loading", "spark-200", "midstream"],
)
def test_error_from_body(body: dict, status: int, cls: type[E.ProviderError]) -> None:
    err = E.error_from_body(body, provider="p", http_status=status)
    assert type(err) is cls


@pytest.mark.parametrize(
    "body",
    [
        {"code": 0, "message": "Success", "sid": "cha1", "choices": [{"message": {"content": "hi"}}]},
        {"id": "x", "choices": [], "error": None},
        {"id": "x", "object": "chat.completion", "choices": [{"message": {"content": "hi"}}]},
        None,
        ["not", "a", "dict"],
    ],
)
def test_success_bodies_are_not_errors(body: object) -> None:
    assert E.error_from_body(body, provider="p", http_status=200) is None


def test_spark_sid_becomes_request_id() -> None:
    err = E.error_from_body({"code": 10013, "message": "audit", "sid": "cha000b0003@dx1"}, provider="spark")
    assert err is not None and err.request_id == "cha000b0003@dx1"
    hdr = E.error_from_body({"code": 10013, "message": "audit", "sid": "s"}, provider="spark", request_id="hdr-1")
    assert hdr is not None and hdr.request_id == "hdr-1"  # a header id wins over the body's


# ---- Retry-After ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the ms header is more precise
        ({"retry-after": "600"}, 120.0),  # capped
        ({"retry-after-ms": "999999"}, 120.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "-5"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),  # a bad header does not hide a good one
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict | None, expected: float | None) -> None:
    assert E.parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert E.parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, now=now) == 30.0
    assert E.parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, now=now) == 0.0


def test_parse_retry_after_case_insensitive_headers() -> None:
    class CIHeaders(dict):
        def get(self, k, default=None):  # like httpx's Headers
            return next((v for kk, v in self.items() if kk.lower() == k.lower()), default)

    assert E.parse_retry_after(CIHeaders({"Retry-After": "4"})) == 4.0


# ---- redaction ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdefghijkl123456", "abcdefghijkl123456"),
        ("header was bearer abcdefghijkl123456", "abcdefghijkl123456"),
        ("Incorrect API key provided: sk-proj-abcdefgh12345678", "sk-proj-abcdefgh12345678"),
        ("key bce-v3/ALTAK-abcdef/0123456789abcdef rejected", "ALTAK-abcdef/0123456789abcdef"),
        ('{"api_key": "k3y-abcdef12345"}', "k3y-abcdef12345"),
        ("x-api-key: ABCDEFGH12345", "ABCDEFGH12345"),
        ("api key: abcdefgh1234", "abcdefgh1234"),
        ("APISecret=MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi", "MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi"),
        ("oauth?client_id=a&client_secret=Zyx9876543210&x=1", "Zyx9876543210"),
        ("/chat?authorization=YXBpX2tleT0iYWRkZDIy&date=Fri", "YXBpX2tleT0iYWRkZDIy"),
        ("GET /v1?access_token=24.abcdef123456.2592000", "24.abcdef123456.2592000"),
        ("proxy https://user:p4ssw0rd12@proxy.example/ failed", "p4ssw0rd12"),
        ("password=hunter22", "hunter22"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    out = E.redact(text)
    assert secret not in out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "This model's maximum context length is 4096 tokens",
        "max_tokens: 4096000 exceeded",
        "the api_key is wrong",
        "cannot reach http://127.0.0.1:8000/v1",
        "请求过于频繁 rpm_rate_limit_exceeded",
    ],
)
def test_redact_keeps_ordinary_text(text: str) -> None:
    assert E.redact(text) == text


def test_redact_empty_and_long() -> None:
    assert E.redact(None) == "" and E.redact("") == ""
    assert len(E.redact("x" * 5000)) == 500


def test_errors_redact_on_construction() -> None:
    err = E.AuthError("Authorization: Bearer abcdefghijkl123456 rejected", provider="p")
    for text in (str(err), repr(err), err.message, err.user_message()):
        assert "abcdefghijkl123456" not in text


def test_scrub_removes_a_known_key_in_any_wording() -> None:
    key = "plainkey0123456789"
    err = E.AuthError(f"Invalid API-key provided: {key}.", provider="qwen")
    assert key in str(err)  # not key-shaped, so `redact` alone cannot see it
    assert err.scrub(key, None, "") is err
    for text in (str(err), repr(err), err.message, str(err.args)):
        assert key not in text
    short = E.AuthError("code abc rejected").scrub("abc")  # too short to be a key: left alone
    assert "abc" in short.message


# ---- what users see --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [E.AuthError, E.RateLimited, E.Timeout, E.ProviderUnavailable, E.BadRequest,
                                 E.ContentFiltered, E.StreamInterrupted])
def test_user_message_is_chinese_first(cls: type[E.ProviderError]) -> None:
    err = cls("secret detail sk-abcdefgh12345678", provider="spark", code=11202)
    msg = err.user_message()
    first_cjk = next(i for i, ch in enumerate(msg) if "\u4e00" <= ch <= "\u9fff")
    first_latin_word = msg.index(err.en)
    assert first_cjk < first_latin_word
    assert "sk-abcdefgh12345678" not in msg and "secret detail" not in msg
    assert "11202" in msg and msg.startswith("spark")


def test_daily_rate_limit_says_so() -> None:
    err = E.RateLimited("x", daily=True)
    assert "今日" in err.user_message() and not err.retryable
    assert E.RateLimited("x").retryable


def test_kinds_and_retryable() -> None:
    assert {k: c.retryable for k, c in E.ERROR_KINDS.items()} == {
        "auth": False, "rate_limited": True, "timeout": True, "unavailable": True, "bad_request": False,
        "content_filtered": False,
    }
    assert E.ProviderUnavailable("x", retryable=False).retryable is False  # an explicit override wins
