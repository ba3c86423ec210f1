"""Price table per provider and model, in CNY per 1M tokens (input and output priced apart).

The defaults ship in `prompts/prices.yaml` with the month they were taken (`as_of`) and
`checked: false`: they are estimates. `PRICES_FILE` names a YAML file of the same layout
whose entries override the defaults (a provider or model it does not mention keeps its
default; a file in another currency replaces the table whole). A model priced nowhere has
no cost (None), never a guessed one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # per 1M prompt tokens
    output: float  # per 1M completion tokens


@dataclass
class PriceTable:
    providers: dict[str, dict[str, Price]] = field(default_factory=dict)
    models: dict[str, Price] = field(default_factory=dict)
    as_of: str = ""
    checked: bool = False
    currency: str = "CNY"
    source: str = "built-in"

    def price(self, provider: str, model: str | None) -> Price | None:
        """provider+model, then the provider's `*`, then the model under any provider name."""
        table = self.providers.get(provider, {})
        if model and model in table:
            return table[model]
        if WILDCARD in table:
            return table[WILDCARD]
        return self.models.get(model or "")

    def cost(self, provider: str, model: str | None, tokens_in: int | None, tokens_out: int | None) -> float | None:
        """Cost of one call; None when the model has no price or the server reported no usage."""
        p = self.price(provider, model)
        if p is None or (tokens_in is None and tokens_out is None):
            return None
        return round(((tokens_in or 0) * p.input + (tokens_out or 0) * p.output) / 1e6, 8)

    def describe(self) -> dict[str, Any]:
        return {"currency": self.currency, "as_of": self.as_of, "checked": self.checked, "source": self.source}


def _price(v: Any, where: str) -> Price:
    if not isinstance(v, dict) or "input" not in v or "output" not in v:
        raise ConfigError(f"PRICES_FILE: {where} needs {{input: N, output: N}} (CNY per 1M tokens)")
    try:
        p = Price(float(v["input"]), float(v["output"]))
    except (TypeError, ValueError):
        raise ConfigError(f"PRICES_FILE: {where}: prices must be numbers") from None
    if not all(math.isfinite(x) and x >= 0 for x in (p.input, p.output)):
        raise ConfigError(f"PRICES_FILE: {where}: prices must be finite and not negative")
    return p


def parse_prices(doc: Any, source: str) -> PriceTable:
    if not isinstance(doc, dict):
        raise ConfigError(f"PRICES_FILE: {source} is not a YAML mapping")
    t = PriceTable(as_of=str(doc.get("as_of") or ""), checked=bool(doc.get("checked", False)),
                   currency=str(doc.get("currency") or "CNY"), source=source)
    provs, models_doc = doc.get("providers") or {}, doc.get("models") or {}
    if not isinstance(provs, dict) or not isinstance(models_doc, dict):
        raise ConfigError(f"PRICES_FILE: `providers` and `models` in {source} must be mappings")
    for prov, models in provs.items():
        if not isinstance(models, dict):
            raise ConfigError(f"PRICES_FILE: providers.{prov} must map model names to prices")
        t.providers[str(prov).lower()] = {str(m): _price(v, f"providers.{prov}.{m}") for m, v in models.items()}
    for m, v in models_doc.items():
        t.models[str(m)] = _price(v, f"models.{m}")
    return t


def builtin_prices() -> PriceTable:
    text = (resources.files("prompts") / "prices.yaml").read_text(encoding="utf-8")
    return parse_prices(yaml.safe_load(text), "built-in")


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The built-in table, overridden entry by entry by the file at `path` (PRICES_FILE)."""
    base = builtin_prices()
    if not path:
        return base
    p = Path(path).expanduser()
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"PRICES_FILE: cannot read {p}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"PRICES_FILE: {p} is not valid YAML: {e}") from None
    own = parse_prices(doc, str(p))
    if own.currency != base.currency:  # mixing currencies would add yuan to dollars: the file alone
        return own
    for prov, models in own.providers.items():
        base.providers.setdefault(prov, {}).update(models)
    base.models.update(own.models)
    if own.as_of:
        base.as_of = own.as_of
    if isinstance(doc, dict) and "checked" in doc:
        base.checked = own.checked
    base.source = str(p)
    return base


def prices_for(settings: Any) -> PriceTable:
    """The table for these settings (`PRICES_FILE` or the defaults)."""
    return load_prices(getattr(settings, "prices_file", None))
