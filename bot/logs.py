"""Logging on stderr with levels; every record passes a filter that masks secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping

_SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|COOKIE)", re.I)


class RedactSecrets(logging.Filter):
    """Replace any configured secret value (and bearer tokens) in a record's final message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        from providers.errors import redact

        msg = record.getMessage()
        for s in self.secrets:
            msg = msg.replace(s, "***")
        record.msg, record.args = redact(msg, limit=None), None
        return True


def secret_values(env: Mapping[str, str]) -> list[str]:
    return [v for k, v in env.items() if _SECRET_NAME.search(k) and v]


def setup_logging(level: str, env: Mapping[str, str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secret_values(env)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("discord.client").setLevel(logging.ERROR)  # "PyNaCl is not installed": no voice here
    for noisy in ("aiosqlite", "asyncio", "httpcore", "httpx", "httpx2", "websockets", "jieba"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
