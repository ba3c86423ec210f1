from __future__ import annotations

import logging

import pytest

from bot.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configured_secrets_and_bearer_tokens_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", {"DASHSCOPE_API_KEY": "sk-abcdef123456", "STUDYBOT_TZ": "Asia/Shanghai",
                            "WEIBO_COOKIE": "SUB=cookievalue99"})
    log = logging.getLogger("studybot.test")
    log.debug("calling with key %s and cookie %s", "sk-abcdef123456", "SUB=cookievalue99")
    log.warning("upstream said: Authorization: Bearer bce-v3/ALTAK-zzzzzzzz/yyyyyyyy")
    log.info("time zone %s", "Asia/Shanghai")  # not a secret: kept
    err = capsys.readouterr().err
    assert "sk-abcdef123456" not in err and "cookievalue99" not in err and "ALTAK-zzzz" not in err
    assert err.count("***") >= 3
    assert "Asia/Shanghai" in err
