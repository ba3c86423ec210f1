from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import BUILTIN_PROVIDERS, ConfigError, load_settings


def test_defaults_need_nothing(isolated_env: Path) -> None:
    s = load_settings()
    assert s.provider_chain == ["offline"]
    assert s.tz == "Asia/Shanghai"
    assert s.digest_time == "08:00"
    assert s.fetch_delay_s == 1.0 and s.fetch_concurrency == 4
    assert s.db_url == f"sqlite+aiosqlite:///{isolated_env / 'studybot.db'}"
    assert s.data_path == isolated_env and isolated_env.is_dir()


def test_default_chain_has_providers_with_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    monkeypatch.setenv("SPARK_API_PASSWORD", "pw")
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9/v1")
    assert load_settings().provider_chain == ["spark", "qwen", "vllm", "offline"]


def test_explicit_chain_keeps_order_and_drops_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_PROVIDERS", " Qwen, ernie ,qwen,offline")
    assert load_settings().provider_chain == ["qwen", "ernie", "offline"]


def test_unknown_provider_names_the_setting_and_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "qwen,nosuch")
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert msg.startswith("STUDYBOT_PROVIDERS")
    assert "'nosuch'" in msg
    for name in BUILTIN_PROVIDERS:
        assert name in msg


@pytest.mark.parametrize(
    ("var", "value"),
    [("STUDYBOT_TZ", "Mars/Olympus"), ("FETCH_CONCURRENCY", "many"), ("FETCH_DELAY_S", "-1"),
     ("DIGEST_TIME", "25:00"), ("DISCORD_MESSAGE_CONTENT", "perhaps"), ("TOOL_MAX_ROUNDS", "99"),
     ("STUDYBOT_LOG_LEVEL", "LOUD")],
)
def test_bad_values_name_their_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert str(e.value).startswith(var + ":")


def test_extra_providers_join_the_known_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_EXTRA_PROVIDERS", "deepseek=https://api.deepseek.com/v1, local2=http://127.0.0.1:8001/v1")
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "deepseek,local2,offline")
    s = load_settings()
    assert s.extra_provider_urls == {"deepseek": "https://api.deepseek.com/v1", "local2": "http://127.0.0.1:8001/v1"}
    assert s.provider_chain == ["deepseek", "local2", "offline"]


@pytest.mark.parametrize("value", ["deepseek", "qwen=https://x/v1", "Bad Name=https://x/v1", "x=ftp://host"])
def test_malformed_extra_providers(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("STUDYBOT_EXTRA_PROVIDERS", value)
    with pytest.raises(ConfigError, match=r"^STUDYBOT_EXTRA_PROVIDERS"):
        load_settings()


def test_dotenv_in_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STUDYBOT_TZ=Europe/Berlin\nDASHSCOPE_API_KEY=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDYBOT_ENV_FILE")
    s = load_settings()
    assert s.tz == "Europe/Berlin"
    assert s.env["DASHSCOPE_API_KEY"] == "from-dotenv"
    assert s.provider_chain == ["qwen", "offline"]


def test_env_file_none_disables_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STUDYBOT_TZ=Europe/Berlin\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDYBOT_ENV_FILE", "none")
    assert load_settings().tz == "Asia/Shanghai"


def test_env_file_names_another_file_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "custom.env"
    f.write_text("STUDYBOT_TZ=Europe/Berlin\nDIGEST_TIME=07:30\n")
    monkeypatch.setenv("STUDYBOT_ENV_FILE", str(f))
    monkeypatch.setenv("DIGEST_TIME", "09:15")
    s = load_settings()
    assert s.tz == "Europe/Berlin"
    assert s.digest_time == "09:15"


def test_sync_database_urls_get_async_drivers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert load_settings().db_url == f"sqlite+aiosqlite:///{tmp_path}/x.db"
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", "postgresql://u:p@db/studybot")
    assert load_settings().db_url == "postgresql+asyncpg://u:p@db/studybot"


def test_env_example_lists_every_setting() -> None:
    from pydantic import AliasChoices

    from bot.config import Settings

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    names = [f.validation_alias.choices[0] for f in Settings.model_fields.values()
             if isinstance(f.validation_alias, AliasChoices)]
    names += ["STUDYBOT_ENV_FILE", "SPARK_API_PASSWORD", "SPARK_APP_ID", "SPARK_API_KEY", "SPARK_API_SECRET",
              "QIANFAN_API_KEY", "QIANFAN_APPID", "DASHSCOPE_API_KEY", "OPENAI_API_KEY"]
    for p in ("SPARK", "ERNIE", "QWEN", "VLLM", "OLLAMA", "OPENAI"):
        names += [f"{p}_BASE_URL", f"{p}_MODEL"]
    missing = [n for n in names if f"# {n}=" not in text]
    assert not missing, missing
