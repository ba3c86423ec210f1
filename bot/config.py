"""Typed settings from the environment and `.env` (DESIGN §4).

`load_settings()` is the single entry point. A wrong value raises `ConfigError`
whose message names the variable and, where there is a closed set, the allowed
values; the CLI prints it on one line and exits non-zero.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

BUILTIN_PROVIDERS: tuple[str, ...] = ("spark", "spark_ws", "ernie", "qwen", "vllm", "ollama", "openai", "offline")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _env(name: str) -> Any:
    # Every field is read from its exact DESIGN name, case-insensitively.
    return Field(default=None, validation_alias=AliasChoices(name))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=False)

    # files and places
    data_dir: str | None = _env("STUDYBOT_DATA_DIR")
    database_url: str | None = _env("STUDYBOT_DATABASE_URL")
    tz: str = Field(default="Asia/Shanghai", validation_alias=AliasChoices("STUDYBOT_TZ"))
    log_level: str = Field(default="WARNING", validation_alias=AliasChoices("STUDYBOT_LOG_LEVEL"))

    # discord
    discord_token: str | None = _env("DISCORD_TOKEN")
    discord_dev_guild_id: int | None = _env("DISCORD_DEV_GUILD_ID")
    discord_message_content: bool = Field(default=False, validation_alias=AliasChoices("DISCORD_MESSAGE_CONTENT"))
    rate_limit_user_per_min: int = Field(default=6, ge=1, validation_alias=AliasChoices("RATE_LIMIT_USER_PER_MIN"))
    rate_limit_server_per_min: int = Field(default=30, ge=1, validation_alias=AliasChoices("RATE_LIMIT_SERVER_PER_MIN"))
    # 0 keeps forever
    conversation_retention_days: float = Field(
        default=90, ge=0, validation_alias=AliasChoices("CONVERSATION_RETENTION_DAYS")
    )
    call_record_retention_days: float = Field(
        default=180, ge=0, validation_alias=AliasChoices("CALL_RECORD_RETENTION_DAYS")
    )
    server_daily_token_budget: int = Field(
        default=200_000, ge=0, validation_alias=AliasChoices("SERVER_DAILY_TOKEN_BUDGET")
    )
    digest_channel_id: int | None = _env("DIGEST_CHANNEL_ID")
    digest_time: str = Field(default="08:00", validation_alias=AliasChoices("DIGEST_TIME"))

    # providers
    providers: str | None = _env("STUDYBOT_PROVIDERS")
    extra_providers: str | None = _env("STUDYBOT_EXTRA_PROVIDERS")
    prices_file: str | None = _env("PRICES_FILE")

    # sources
    people_daily_base_url: str = Field(
        default="http://paper.people.com.cn", validation_alias=AliasChoices("PEOPLE_DAILY_BASE_URL")
    )
    weibo_hot_url: str = Field(
        default="https://weibo.com/ajax/side/hotSearch", validation_alias=AliasChoices("WEIBO_HOT_URL")
    )
    weibo_mobile_url: str = Field(
        default="https://m.weibo.cn/api/container/getIndex?containerid=106003type%3D25%26t%3D3%26disable_hot%3D1%26filter_type%3Drealtimehot",
        validation_alias=AliasChoices("WEIBO_MOBILE_URL"),
    )
    weibo_summary_url: str = Field(
        default="https://s.weibo.com/top/summary?cate=realtimehot", validation_alias=AliasChoices("WEIBO_SUMMARY_URL")
    )
    weibo_cookie: str | None = _env("WEIBO_COOKIE")
    news_rss_urls: str | None = _env("NEWS_RSS_URLS")
    fetch_delay_s: float = Field(default=1.0, ge=0, validation_alias=AliasChoices("FETCH_DELAY_S"))
    fetch_concurrency: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("FETCH_CONCURRENCY"))

    # knowledge and tools
    embedding_model: str | None = _env("EMBEDDING_MODEL")
    tool_max_rounds: int = Field(default=4, ge=0, le=16, validation_alias=AliasChoices("TOOL_MAX_ROUNDS"))
    url_allowlist: str | None = _env("URL_ALLOWLIST")

    @field_validator("tz")
    @classmethod
    def _valid_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r} (e.g. Asia/Shanghai)") from e
        return v

    @field_validator("digest_time")
    @classmethod
    def _valid_time(cls, v: str) -> str:
        if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", v.strip()):
            raise ValueError(f"{v!r} is not a time of day HH:MM (e.g. 08:00)")
        return v.strip()

    @field_validator("log_level")
    @classmethod
    def _valid_level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("allowed: DEBUG, INFO, WARNING, ERROR")
        return v

    # ---- derived values -------------------------------------------------------------

    @cached_property
    def extra_provider_urls(self) -> dict[str, str]:
        """`name=https://host/v1,...` parsed; names lower-cased."""
        out: dict[str, str] = {}
        for item in (self.extra_providers or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, url = item.partition("=")
            name = name.strip().lower()
            url = url.strip()
            if not sep or not _NAME_RE.match(name) or not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"STUDYBOT_EXTRA_PROVIDERS: {item!r} is not of the form name=https://host/v1 "
                    "(name: lower-case letters, digits, _)"
                )
            if name in BUILTIN_PROVIDERS:
                raise ConfigError(f"STUDYBOT_EXTRA_PROVIDERS: {name!r} is a built-in provider name; choose another")
            out[name] = url
        return out

    @property
    def known_providers(self) -> tuple[str, ...]:
        return BUILTIN_PROVIDERS + tuple(self.extra_provider_urls)

    @cached_property
    def provider_chain(self) -> list[str]:
        """The fallback order. Unset: every provider that has credentials, then `offline`."""
        known = self.known_providers
        if self.providers and self.providers.strip():
            chain = [p.strip().lower() for p in self.providers.split(",") if p.strip()]
            bad = [p for p in chain if p not in known]
            if bad:
                raise ConfigError(
                    f"STUDYBOT_PROVIDERS: unknown provider {', '.join(map(repr, bad))}; "
                    f"allowed: {', '.join(known)}"
                )
            # keep order, drop repeats
            return list(dict.fromkeys(chain))
        from providers.presets import configured_by_default

        chain = [p for p in known if p != "offline" and configured_by_default(p, self.env)]
        return [*chain, "offline"]

    @property
    def env(self) -> dict[str, str]:
        """Environment plus `.env` values, for provider keys read by name (`<NAME>_API_KEY`)."""
        return _merged_env()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def data_path(self) -> Path:
        if self.data_dir:
            p = Path(self.data_dir).expanduser()
        else:
            from platformdirs import user_data_dir

            p = Path(user_data_dir("studybot", appauthor=False))
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def db_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # accept plain sync URLs and pick the async driver
            if url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
            elif url.startswith(("postgresql://", "postgres://")):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            return url
        return f"sqlite+aiosqlite:///{self.data_path / 'studybot.db'}"

    @property
    def rss_urls(self) -> list[str]:
        return [u.strip() for u in (self.news_rss_urls or "").split(",") if u.strip()]

    @property
    def allowlisted_hosts(self) -> set[str]:
        return {h.strip().lower() for h in (self.url_allowlist or "").split(",") if h.strip()}


def env_file_path() -> Path | None:
    """`.env` in the working directory unless STUDYBOT_ENV_FILE names another file or `none`."""
    choice = os.environ.get("STUDYBOT_ENV_FILE")
    if choice is not None and choice.strip().lower() in {"none", ""}:
        return None
    path = Path(choice) if choice else Path(".env")
    return path if path.is_file() else None


def _read_env_file(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    from dotenv import dotenv_values  # pydantic-settings depends on python-dotenv

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _merged_env() -> dict[str, str]:
    # the real environment wins over .env, as in pydantic-settings
    return {**_read_env_file(env_file_path()), **os.environ}


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raise ConfigError naming the variable on a bad value."""
    try:
        settings = Settings(_env_file=env_file_path(), **overrides)  # type: ignore[call-arg]
        # validate derived values eagerly so errors surface at start-up, not mid-command
        _ = settings.provider_chain
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        name = _alias_of(field)
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise ConfigError(f"{name}: {msg}") from None
    return settings


def _alias_of(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return field.upper()
