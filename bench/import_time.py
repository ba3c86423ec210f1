"""Start-up cost: `import providers` and `studybot --help`.

    .venv/bin/python bench/import_time.py [--runs N]

- `import_providers_ms`: the cumulative time of `import providers` in a fresh interpreter, as
  reported by `python -X importtime` (interpreter start-up excluded), median of N runs.
  Target 150 ms: the package must not pull in the openai SDK or websockets at import.
- `help_ms`: wall time of `studybot --help` (the console script of this environment, or
  `python -m bot.cli --help`), start-up included, median of N runs. Target 500 ms.
- `python_startup_ms`: wall time of `python -c pass`, for reference.

Figures on stdout as `name: value` lines; the heaviest imports under `providers` go to stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"import_providers_ms": 150.0, "help_ms": 500.0}


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("STUDYBOT_")}
    e.update({"STUDYBOT_ENV_FILE": "none", "PYTHONPATH": str(ROOT)})
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    return e


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env(), check=False)
    ms = (time.perf_counter() - t0) * 1e3
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return ms


def import_time(module: str) -> tuple[float, list[tuple[int, str]]]:
    """Cumulative import time of `module` (ms) and the heaviest imports beneath it."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, cwd=ROOT, env=env(), check=True)
    rows: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        # "import time:       self [us] |  cumulative | imported package"
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line.split(":", 1)[1].split("|", 2)
        rows.append((int(cum_us), name.strip()))
    top = next((cum for cum, name in rows if name == module), None)
    if top is None:
        raise SystemExit(f"`import {module}` is not in the -X importtime output")
    heavy = sorted((r for r in rows if r[1] != module), reverse=True)[:7]
    return top / 1e3, heavy


def help_cmd() -> list[str]:
    script = Path(sys.executable).parent / "studybot"
    return [str(script), "--help"] if script.exists() else [sys.executable, "-m", "bot.cli", "--help"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    # one untimed pass of each: byte-code caches written, files in the page cache
    import_time("providers")
    wall(help_cmd())
    wall([sys.executable, "-c", "pass"])

    imports, heavy = [], []
    helps, startups = [], []
    for _ in range(args.runs):  # interleaved, so a burst of load hits all three alike
        ms, heavy = import_time("providers")
        imports.append(ms)
        helps.append(wall(help_cmd()))
        startups.append(wall([sys.executable, "-c", "pass"]))

    figures = {"import_providers_ms": statistics.median(imports), "help_ms": statistics.median(helps),
               "python_startup_ms": statistics.median(startups)}
    print(f"heaviest imports under providers: {', '.join(f'{n} {c / 1e3:.1f} ms' for c, n in heavy)}",
          file=sys.stderr)
    print(f"help command: {' '.join(help_cmd())}", file=sys.stderr)
    for name, value in figures.items():
        print(f"{name}: {value:.1f}")
    for name, target in TARGETS.items():
        print(f"{name}_target: {target:.0f}")
        print(f"{name}_within_target: {'yes' if figures[name] <= target else 'no'}")


if __name__ == "__main__":
    main()
