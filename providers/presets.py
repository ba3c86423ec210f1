"""Provider presets: deployments are data (base URL, auth, models, quirks).

Everything here is plain data and cheap to import; the transports read it.
Environment names follow DESIGN §4: `<NAME>_BASE_URL`, `<NAME>_MODEL`, `<NAME>_API_KEY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str
    default_model: str
    models: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()  # first non-empty wins
    needs_key: bool = True
    transport: str = "openai"  # openai | spark_ws | offline
    label: str = ""
    # quirks
    check_body_code: bool = False  # Spark: business `code` in 200 bodies and in every chunk
    tool_calls_switch: bool = False  # Spark: send tool_calls_switch=true with tools
    strict_alternation: bool = False  # ERNIE: user/assistant must alternate
    thinking_off_nonstream: bool = False  # Qwen3: enable_thinking=false for non-streaming calls
    include_usage: bool = True  # stream_options.include_usage
    local: bool = False  # a local server: generous concurrency, no key
    max_concurrency: int = 16
    headers: Mapping[str, str] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "spark": Preset(
        name="spark",
        label="讯飞星火 Spark (HTTP)",
        base_url="https://spark-api-open.xf-yun.com/v1",
        default_model="lite",
        models=("lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra"),
        key_env=("SPARK_API_PASSWORD",),
        check_body_code=True,
        tool_calls_switch=True,
        include_usage=False,  # Spark puts usage on the last chunk by itself
        max_concurrency=2,  # 11203: Spark's concurrency limit is low on free tiers
    ),
    "spark_ws": Preset(
        name="spark_ws",
        label="讯飞星火 Spark (WebSocket)",
        base_url="wss://spark-api.xf-yun.com/v3.5/chat",
        default_model="generalv3.5",
        models=("lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra"),
        key_env=("SPARK_API_KEY",),
        transport="spark_ws",
        max_concurrency=2,
    ),
    "ernie": Preset(
        name="ernie",
        label="百度文心 ERNIE (千帆 Qianfan v2)",
        base_url="https://qianfan.baidubce.com/v2",
        default_model="ernie-speed-128k",
        models=(
            "ernie-4.5-turbo-32k", "ernie-4.5-turbo-128k", "ernie-x1-turbo-32k", "ernie-4.0-turbo-8k",
            "ernie-3.5-8k", "ernie-speed-128k", "ernie-lite-8k",
        ),
        key_env=("QIANFAN_API_KEY", "ERNIE_API_KEY"),
        strict_alternation=True,
        max_concurrency=8,
    ),
    "qwen": Preset(
        name="qwen",
        label="阿里通义千问 Qwen (DashScope compatible-mode)",
        base_url="https://dashscope.aliyuncs.com/compatible-mode/v1",
        default_model="qwen-plus",
        models=("qwen-turbo", "qwen-plus", "qwen-max", "qwen-flash", "qwen3-max", "qwen3-32b"),
        key_env=("DASHSCOPE_API_KEY", "QWEN_API_KEY"),
        thinking_off_nonstream=True,
        max_concurrency=16,
    ),
    "vllm": Preset(
        name="vllm",
        label="vLLM (local, OpenAI-compatible)",
        base_url="http://127.0.0.1:8000/v1",
        default_model="",  # discovered from /v1/models
        key_env=("VLLM_API_KEY",),
        needs_key=False,
        local=True,
        max_concurrency=256,
    ),
    "ollama": Preset(
        name="ollama",
        label="Ollama (local, /v1)",
        base_url="http://127.0.0.1:11434/v1",
        default_model="qwen2.5:7b",
        key_env=("OLLAMA_API_KEY",),
        needs_key=False,
        local=True,
        max_concurrency=8,
    ),
    "openai": Preset(
        name="openai",
        label="OpenAI",
        base_url="https://api.openai.com/v1",
        default_model="gpt-4o-mini",
        models=("gpt-4o-mini", "gpt-4o"),
        key_env=("OPENAI_API_KEY",),
        max_concurrency=16,
    ),
    "offline": Preset(
        name="offline",
        label="离线引擎 offline (retrieval, no network)",
        base_url="",
        default_model="offline-retrieval",
        models=("offline-retrieval",),
        needs_key=False,
        transport="offline",
        max_concurrency=64,
    ),
}


def extra_preset(name: str, base_url: str) -> Preset:
    """An endpoint from STUDYBOT_EXTRA_PROVIDERS (DeepSeek, llama.cpp server, a vLLM replica ...)."""
    local = any(h in base_url for h in ("://127.", "://localhost", "://[::1]"))
    return Preset(
        name=name, label=f"{name} (OpenAI-compatible)", base_url=base_url, default_model="",
        key_env=(f"{name.upper()}_API_KEY",), needs_key=False, local=local,
        max_concurrency=256 if local else 16,
    )


def resolve(name: str, env: Mapping[str, str], extra_urls: Mapping[str, str] | None = None) -> Preset:
    """The preset for `name` with `<NAME>_BASE_URL` / `<NAME>_MODEL` / `<NAME>_MAX_CONCURRENCY` applied."""
    if name in PRESETS:
        p = PRESETS[name]
    elif extra_urls and name in extra_urls:
        p = extra_preset(name, extra_urls[name])
    else:
        raise KeyError(name)
    up = name.upper()
    changes: dict[str, object] = {}
    if env.get(f"{up}_BASE_URL"):
        changes["base_url"] = env[f"{up}_BASE_URL"].rstrip("/")
    if env.get(f"{up}_MODEL"):
        changes["default_model"] = env[f"{up}_MODEL"]
    if env.get(f"{up}_MAX_CONCURRENCY", "").isdigit():
        changes["max_concurrency"] = max(1, int(env[f"{up}_MAX_CONCURRENCY"]))
    if name == "ernie" and env.get("QIANFAN_APPID"):
        changes["headers"] = {"appid": env["QIANFAN_APPID"]}
    return replace(p, **changes) if changes else p  # type: ignore[arg-type]


def api_key(preset: Preset, env: Mapping[str, str]) -> str | None:
    for k in preset.key_env:
        if env.get(k):
            return env[k]
    return None


def configured_by_default(name: str, env: Mapping[str, str]) -> bool:
    """Whether a provider joins the default chain (STUDYBOT_PROVIDERS unset): it has what it needs."""
    if name == "spark_ws":
        return all(env.get(k) for k in ("SPARK_APP_ID", "SPARK_API_KEY", "SPARK_API_SECRET"))
    if name in ("vllm", "ollama"):
        return bool(env.get(f"{name.upper()}_BASE_URL"))
    if name in PRESETS:
        return api_key(PRESETS[name], env) is not None
    return True  # extra endpoints are configured explicitly
