"""providers: one streaming interface over many LLMs (DESIGN §1).

Cheap to import: transports load the openai SDK / websockets only when first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import (
    AuthError,
    BadRequest,
    ContentFiltered,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    Timeout,
)
from .presets import PRESETS, Preset, api_key, resolve
from .types import (
    ChatEvent,
    Final,
    Health,
    Message,
    ModelInfo,
    Provider,
    ReasoningDelta,
    Reply,
    TextDelta,
    ToolCallDelta,
    Usage,
    collect,
)

if TYPE_CHECKING:
    from .offline import OfflineEngine
    from .openai_compat import Timeouts

__all__ = [
    "PRESETS", "AuthError", "BadRequest", "ChatEvent", "ContentFiltered", "Final", "Health", "Message",
    "ModelInfo", "Preset", "Provider", "ProviderError", "ProviderUnavailable", "RateLimited", "ReasoningDelta",
    "Reply", "StreamInterrupted", "TextDelta", "Timeout", "ToolCallDelta", "Usage", "api_key", "build_provider",
    "collect", "resolve",
]


class MissingCredentials(ProviderError):
    kind = "auth"
    zh = "未配置密钥"
    en = "no API key configured"


def build_provider(
    name: str,
    env: Mapping[str, str],
    *,
    extra_urls: Mapping[str, str] | None = None,
    offline_engine: OfflineEngine | None = None,
    timeouts: Timeouts | None = None,
) -> Provider:
    """Build one provider from its preset and the environment (keys read by name, never logged)."""
    preset = resolve(name, env, extra_urls)
    if preset.transport == "offline":
        from .offline import OfflineProvider

        return OfflineProvider(offline_engine)
    if preset.transport == "spark_ws":
        from .spark_ws import SparkWSProvider

        creds = [env.get(k) or "" for k in ("SPARK_APP_ID", "SPARK_API_KEY", "SPARK_API_SECRET")]
        if not all(creds):
            raise MissingCredentials("set SPARK_APP_ID, SPARK_API_KEY and SPARK_API_SECRET", provider=name)
        return SparkWSProvider(preset, app_id=creds[0], api_key=creds[1], api_secret=creds[2])
    from .openai_compat import OpenAICompatProvider, Timeouts

    key = api_key(preset, env)
    if preset.needs_key and not key:
        raise MissingCredentials(f"set {' or '.join(preset.key_env)}", provider=name)
    return OpenAICompatProvider(preset, api_key=key, timeouts=timeouts or _timeouts_from_env(name, env, Timeouts))


def _timeouts_from_env(name: str, env: Mapping[str, str], cls: type[Timeouts]) -> Timeouts:
    """`STUDYBOT_CONNECT_TIMEOUT_S`, `STUDYBOT_FIRST_TOKEN_TIMEOUT_S`, `STUDYBOT_TOTAL_TIMEOUT_S`."""
    def f(key: str, default: float) -> float:
        try:
            return float(env.get(f"STUDYBOT_{key}", default))
        except ValueError:
            return default

    d = cls()
    return cls(f("CONNECT_TIMEOUT_S", d.connect), f("FIRST_TOKEN_TIMEOUT_S", d.first_token),
               f("TOTAL_TIMEOUT_S", d.total))
