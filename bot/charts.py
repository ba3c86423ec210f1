"""PNG charts of the call records, headless (matplotlib's Agg canvas; pyplot is never imported).

- `latency_chart`: distribution of time to first token and of total latency per provider
  (box plots, milliseconds, ok calls only).
- `errors_chart`: errors per local day, stacked by kind.

Titles, axis labels and units are Chinese when a font with every glyph they use is found:
first fonts shipped by PyPI packages (`noto-cjk-sans-otc`, `mplfonts`), then system fonts
(e.g. Debian's fonts-noto-cjk). The glyphs are checked on the font matplotlib actually
resolves; without such a font the labels fall back to English, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from .stats import ERROR_OUTCOMES, kind_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "latency_title": "各服务商延迟分布（成功调用）",
        "ttft": "首字延迟 TTFT",
        "total": "总延迟",
        "provider": "服务商",
        "ms": "延迟（毫秒）",
        "unit": "毫秒",
        "errors_title": "每日错误次数（按类型堆叠）",
        "date": "日期",
        "count": "错误次数（次）",
        "no_data": "无数据",
        "no_errors": "这段时间没有错误",
    },
    "en": {
        "latency_title": "Latency per provider (successful calls)",
        "ttft": "Time to first token",
        "total": "Total latency",
        "provider": "Provider",
        "ms": "Latency (ms)",
        "unit": "ms",
        "errors_title": "Errors per day (stacked by kind)",
        "date": "Date",
        "count": "Errors (count)",
        "no_data": "no data",
        "no_errors": "no errors in this window",
    },
}

NO_CJK_WARNING = ("没有找到含所需中文字形的字体，图表改用英文标签；请安装 noto-cjk-sans-otc（pip）或 "
                  "fonts-noto-cjk（apt）/ no font with the Chinese glyphs found: chart labels fall back to "
                  "English; install noto-cjk-sans-otc (pip) or fonts-noto-cjk (apt)")

# font files shipped by PyPI packages: (module, file inside it)
PACKAGED_FONTS: tuple[tuple[str, str], ...] = (
    ("noto_cjk_sans_otc", "NotoSansCJK-Regular.ttc"),
    ("mplfonts", "fonts/NotoSansCJKsc-Regular.otf"),
)
SYSTEM_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path("~/.local/share/fonts"))
_CJK_FILE_HINTS = ("cjk", "wqy", "wenquanyi", "sourcehan", "source-han", "droidsansfallback", "simhei", "noto-sans-sc",
                   "notosanssc", "ukai", "uming", "arphic")
# preferred families first: simplified-Chinese shapes before the JP/TC faces of the same collection
_PREFERRED = ("Noto Sans CJK SC", "Source Han Sans SC", "Source Han Sans CN", "Noto Sans SC", "WenQuanYi Micro Hei",
              "WenQuanYi Zen Hei", "Droid Sans Fallback", "Noto Sans CJK JP", "Noto Serif CJK SC")


@dataclass(frozen=True, slots=True)
class CjkFont:
    family: str
    path: str
    face_index: int = 0


@dataclass
class Chart:
    path: Path
    figure: Figure
    lang: str  # zh | en
    font: CjkFont | None
    title: str
    xlabel: str
    ylabel: str
    warnings: list[str] = field(default_factory=list)


# --- fonts ------------------------------------------------------------------------------------------

def needed_glyphs() -> str:
    """Every non-ASCII character the Chinese charts draw (labels and error-kind names)."""
    from .stats import KIND_NAMES

    text = "".join(LABELS["zh"].values()) + "".join(zh for zh, _ in KIND_NAMES.values())
    return "".join(sorted({c for c in text if ord(c) > 127 and not c.isspace()}))


def _font_files() -> Iterator[Path]:
    for module, rel in PACKAGED_FONTS:
        if importlib.util.find_spec(module) is None:
            continue
        try:
            p = Path(str(resources.files(module).joinpath(rel)))
        except (ModuleNotFoundError, TypeError):
            continue
        if p.is_file():
            yield p
    for d in SYSTEM_FONT_DIRS:
        try:
            d = d.expanduser()
        except RuntimeError:  # no home directory known
            continue
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in (".ttf", ".ttc", ".otf") and any(h in p.name.lower() for h in _CJK_FILE_HINTS):
                yield p


def has_glyphs(font_path: Any, text: str) -> bool:
    """Whether the face matplotlib would load for `font_path` has a glyph for every character."""
    from matplotlib import font_manager as fm

    font = fm.get_font(font_path)
    return all(font.get_char_index(ord(c)) != 0 for c in text)


_FIND_LOCK = threading.Lock()


def find_cjk_font(probe: str | None = None) -> CjkFont | None:
    """A font family that matplotlib resolves to a face with every glyph of `probe` (default: the
    Chinese labels), or None. Packaged and system CJK files are registered with matplotlib first.
    Cached: the search runs once per process."""
    with _FIND_LOCK:
        return _find_cjk_font(probe)


@functools.lru_cache(maxsize=8)
def _find_cjk_font(probe: str | None) -> CjkFont | None:
    from matplotlib import font_manager as fm

    probe = probe if probe is not None else needed_glyphs()
    known = {Path(f.fname).resolve() for f in fm.fontManager.ttflist}
    for p in _font_files():
        if p.resolve() not in known:
            try:
                fm.fontManager.addfont(str(p))
                known.add(p.resolve())
            except (OSError, RuntimeError, ValueError) as e:  # a broken file is skipped, not fatal
                log.debug("cannot load font %s: %s", p, e)
    families = list(dict.fromkeys(f.name for f in fm.fontManager.ttflist))
    ordered = [f for f in _PREFERRED if f in families] + [f for f in families if f not in _PREFERRED]
    for family in ordered:
        try:
            resolved = fm.findfont(fm.FontProperties(family=family), fallback_to_default=False)
        except ValueError:
            continue
        try:
            if has_glyphs(resolved, probe):
                return CjkFont(family, str(resolved), int(getattr(resolved, "face_index", 0) or 0))
        except (OSError, RuntimeError):
            continue
    return None


_RC_LOCK = threading.Lock()  # rc_context changes process-wide rcParams: one chart at a time


@contextlib.contextmanager
def _fonts(font: CjkFont | None) -> Iterator[None]:
    import matplotlib

    rc: dict[str, Any] = {"axes.unicode_minus": False}
    if font is not None:
        # concrete family names, not the generic "sans-serif": texts keep them, so the figure renders
        # the same when saved again outside this context
        rc["font.family"] = [font.family, "DejaVu Sans"]
    with _RC_LOCK, matplotlib.rc_context(rc):
        yield


def _choose(font: CjkFont | Literal["auto"] | None) -> tuple[CjkFont | None, str, list[str]]:
    chosen = find_cjk_font() if font == "auto" else font
    if chosen is None:
        log.warning(NO_CJK_WARNING)
        return None, "en", [NO_CJK_WARNING]
    return chosen, "zh", []


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


# --- charts -------------------------------------------------------------------------------------------

def latency_chart(rows: Iterable[Mapping[str, Any]], path: str | Path, *,
                  font: CjkFont | Literal["auto"] | None = "auto") -> Chart:
    """Box plots of TTFT and total latency per provider (ms), ok calls only."""
    path = Path(path)
    chosen, lang, warns = _choose(font)
    L = LABELS[lang]
    ok = [r for r in rows if r["outcome"] == "ok"]
    providers = sorted({r["provider"] for r in ok})
    with _fonts(chosen):
        fig = _figure((10, 4.8))
        fig.suptitle(L["latency_title"], fontsize=13)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.84, bottom=0.13, wspace=0.25)
        axes = fig.subplots(1, 2)
        for ax, key, sub in ((axes[0], "ttft_ms", L["ttft"]), (axes[1], "duration_ms", L["total"])):
            data = [(p, [float(r[key]) for r in ok if r["provider"] == p and r[key] is not None]) for p in providers]
            data = [(p, v) for p, v in data if v]
            ax.set_title(f"{sub}（{L['unit']}）" if lang == "zh" else f"{sub} ({L['unit']})")
            ax.set_xlabel(L["provider"])
            ax.set_ylabel(L["ms"])
            if not data:
                ax.text(0.5, 0.5, L["no_data"], ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                continue
            ax.boxplot([v for _, v in data], showfliers=True)
            ax.set_xticks(range(1, len(data) + 1), [p for p, _ in data])
            ax.grid(axis="y", alpha=0.3)
        _save(fig, path)
    return Chart(path, fig, lang, chosen, L["latency_title"], L["provider"], L["ms"], warns)


def local_days(since: float, until: float, tz: str) -> list[date]:
    zone = ZoneInfo(tz)
    first = datetime.fromtimestamp(since, zone).date()
    last = datetime.fromtimestamp(until, zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def errors_per_day(rows: Iterable[Mapping[str, Any]], days: Sequence[date], tz: str) -> dict[str, list[int]]:
    """{kind: [count per day]} over error and interrupted records."""
    zone = ZoneInfo(tz)
    index = {d: i for i, d in enumerate(days)}
    out: dict[str, list[int]] = {}
    for r in rows:
        if r["outcome"] not in ERROR_OUTCOMES:
            continue
        d = datetime.fromtimestamp(float(r["started_at"]), zone).date()
        if d in index:
            out.setdefault(r["error_kind"] or "error", [0] * len(days))[index[d]] += 1
    return dict(sorted(out.items(), key=lambda kv: (-sum(kv[1]), kv[0])))


def errors_chart(rows: Iterable[Mapping[str, Any]], path: str | Path, *, since: float, until: float,
                 tz: str = "Asia/Shanghai", font: CjkFont | Literal["auto"] | None = "auto") -> Chart:
    """Errors per local day in `tz`, one stacked bar per day, one colour per kind."""
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    chosen, lang, warns = _choose(font)
    L = LABELS[lang]
    days = local_days(since, until, tz)
    counts = errors_per_day(rows, days, tz)
    xlabel = f"{L['date']}（{tz}）" if lang == "zh" else f"{L['date']} ({tz})"
    with _fonts(chosen):
        width = max(7.0, min(15.0, 0.45 * len(days) + 4))
        fig = _figure((width, 4.6))
        # fixed margins (cheaper than a layout engine): room for the legend on the right
        fig.subplots_adjust(left=0.8 / width, right=1 - 1.7 / width, top=0.88, bottom=0.2)
        ax = fig.subplots()
        ax.set_title(L["errors_title"], fontsize=13)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(L["count"])
        x = list(range(len(days)))
        bottom = [0] * len(days)
        for kind, per_day in counts.items():
            ax.bar(x, per_day, bottom=bottom, label=kind_name(kind, lang), width=0.8)
            bottom = [b + c for b, c in zip(bottom, per_day, strict=True)]
        step = max(1, len(days) // 14)
        ax.set_xticks(x[::step], [d.strftime("%m-%d") for d in days[::step]], rotation=45 if step > 1 else 0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if counts:
            ax.set_ylim(0, max(bottom) * 1.1 + 0.5)  # headroom above the tallest bar
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, borderaxespad=0)
        else:
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, L["no_errors"], ha="center", va="center", transform=ax.transAxes)
        ax.grid(axis="y", alpha=0.3)
        _save(fig, path)
    return Chart(path, fig, lang, chosen, L["errors_title"], xlabel, L["count"], warns)
