"""Injected clocks for tests: time moves only when a test moves it."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    """Seconds (monotonic-like); `wall()` is the same instant as Unix time from `wall_origin`."""

    def __init__(self, start: float = 0.0, *, wall_origin: float = 0.0) -> None:
        self.now = start
        self.wall_origin = wall_origin

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_origin + self.now

    def advance(self, s: float) -> None:
        self.now += s


class DateClock:
    """An aware datetime that moves by `advance(hours=..., days=...)`."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now
