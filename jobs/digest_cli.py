"""`studybot digest [--date D] [--provider P] [--json] [--post] [--dry-run]` (DESIGN §3).

`digest_command(app, date, provider, json_out, post, out, ...)` is what bot/cli.py calls: it
builds the digest, prints it to `out` (JSON document or the terminal block), stores it per
date unless `dry_run`, and with `post` posts it to every enabled subscription's channel once
per date and channel (needs DISCORD_TOKEN and the Discord adapter's `send`). Messages for
people go to `err` (stderr), in Chinese and English; stdout carries only the digest.
Exit codes: 0 a digest with content, 1 an empty digest or a failed post, 2 a usage error,
3 posting not available.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import date, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.app import App
    from jobs.digest import Send

_ISO = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def parse_day(text: str | None, today: date) -> date:
    """None/today/今天 → today; yesterday/昨天; YYYY-MM-DD or YYYYMMDD. ValueError with a clear message."""
    value = (text or "").strip().lower()
    if value in {"", "today", "今天"}:
        return today
    if value in {"yesterday", "昨天"}:
        return today - timedelta(days=1)
    m = _ISO.match(value)
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            pass
    raise ValueError(f"--date: 无法识别的日期 {text!r}，请用 YYYY-MM-DD / not a date: {text!r} (use YYYY-MM-DD)")


async def digest_command(app: App, date: str | None, provider: str | None, json_out: bool, post: bool,
                         out: IO[str], *, dry_run: bool = False, err: IO[str] | None = None,
                         send: Send | None = None, now: datetime | None = None, **build_kw: Any) -> int:
    """`build_kw` (fetcher, classifier) goes to `build_digest`: benchmarks and tests inject them."""
    from bot.app import stderr_progress
    from jobs.digest import build_digest, post_digest, render_terminal, save_digest
    from jobs.scheduler import load_subscriptions

    err = err or sys.stderr
    settings = app.settings
    now = (now or datetime.now(settings.zone)).astimezone(settings.zone)
    try:
        day = parse_day(date, now.date())
    except ValueError as e:
        print(f"studybot: {e}", file=err)
        return 2
    if day > now.date():
        print(f"studybot: --date: {day} 还没到（{settings.tz} 今天是 {now.date()}）/ "
              f"{day} is in the future (today in {settings.tz} is {now.date()})", file=err)
        return 2
    if post and dry_run:
        print("--dry-run：只打印，不发布 / dry run: printing only, not posting", file=err)
        post = False
    if post and not settings.discord_token:
        print("studybot: 未设置 DISCORD_TOKEN，无法发布到 Discord；去掉 --post 只打印简报。/ "
              "DISCORD_TOKEN is not set: cannot post to Discord; drop --post to print the digest only.", file=err)
        return 2
    if post and send is None:
        print("studybot: 发布到 Discord 尚未接入此版本 / posting to Discord is not available in this version.",
              file=err)
        return 3

    progress = stderr_progress if getattr(err, "isatty", lambda: False)() else None
    digest = await build_digest(app, day, provider, progress, now=now, **build_kw)
    if not dry_run:
        await save_digest(await app.store(), digest)
    if json_out:
        out.write(json.dumps(digest.as_dict(), ensure_ascii=False) + "\n")
    else:
        out.write(render_terminal(digest))
    out.flush()

    code = 0 if digest.ok else 1
    if post and send is not None:
        store = await app.store()
        targets = [s.channel_id for s in await load_subscriptions(store, settings) if s.enabled]
        if not targets:
            print("没有订阅简报的频道（/digest 或 DIGEST_CHANNEL_ID）/ no channel subscribes to the digest "
                  "(use /digest or DIGEST_CHANNEL_ID)", file=err)
            return 1
        for r in await post_digest(app, day, targets, send, provider=provider, now=now, digest=digest):
            print(f"{r.target}: {_STATUS.get(r.status, r.status)}" + (f" ({r.error})" if r.error else ""), file=err)
            if r.status in {"failed", "empty"}:
                code = 1
    return code


_STATUS = {"sent": "已发布 / posted", "already": "今天已发过 / already posted for this date",
           "failed": "发布失败 / failed", "empty": "简报为空，未发布 / empty digest, not posted"}

