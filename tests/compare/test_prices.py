"""The price table (bot/prices.py, prompts/prices.yaml): lookups, costs, PRICES_FILE overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.prices import Price, builtin_prices, load_prices, prices_for
from providers.presets import PRESETS


def test_builtin_table_says_when_and_that_it_is_an_estimate() -> None:
    t = builtin_prices()
    assert t.currency == "CNY" and t.as_of and not t.checked and t.source == "built-in"
    # every priced entry is a pair of non-negative numbers
    for models in t.providers.values():
        assert all(p.input >= 0 and p.output >= 0 for p in models.values())


def test_default_models_of_the_presets_have_prices() -> None:
    t = builtin_prices()
    for name in ("qwen", "ernie", "spark", "openai", "vllm", "ollama", "offline"):
        assert t.price(name, PRESETS[name].default_model) is not None, name


def test_lookup_order_and_cost() -> None:
    t = builtin_prices()
    assert t.price("vllm", "anything-local") == Price(0.0, 0.0)  # the provider's "*"
    assert t.price("ds", "deepseek-chat") == t.models["deepseek-chat"]  # an extra endpoint, by model
    assert t.price("qwen", "no-such-model") is None
    p = t.price("qwen", "qwen-plus")
    assert p is not None
    assert t.cost("qwen", "qwen-plus", 1_000_000, 500_000) == pytest.approx(p.input + p.output / 2)
    assert t.cost("qwen", "qwen-plus", None, None) is None  # no usage reported: unknown, not zero
    assert t.cost("qwen", "no-such-model", 10, 10) is None


def test_prices_file_overrides_entry_by_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "prices.yaml"
    f.write_text("as_of: '2026-11'\nchecked: true\nproviders:\n  qwen:\n    qwen-plus: {input: 1.5, output: 3}\n"
                 "  spark:\n    generalv3.5: {input: 30, output: 30}\nmodels:\n  my-model: {input: 1, output: 1}\n",
                 encoding="utf-8")
    monkeypatch.setenv("PRICES_FILE", str(f))
    t = prices_for(load_settings())
    assert t.price("qwen", "qwen-plus") == Price(1.5, 3.0)
    assert t.price("qwen", "qwen-max") == builtin_prices().price("qwen", "qwen-max")  # untouched default
    assert t.price("spark", "generalv3.5") == Price(30.0, 30.0)
    assert t.price("x", "my-model") == Price(1.0, 1.0)
    assert (t.as_of, t.checked, t.source) == ("2026-11", True, str(f))


def test_a_file_in_another_currency_replaces_the_table(tmp_path: Path) -> None:
    f = tmp_path / "usd.yaml"
    f.write_text("currency: USD\nas_of: '2026-10'\nproviders:\n  openai:\n    gpt-4o-mini: {input: 0.15, output: 0.6}\n",
                 encoding="utf-8")
    t = load_prices(f)
    assert t.currency == "USD" and t.price("qwen", "qwen-plus") is None
    assert t.price("openai", "gpt-4o-mini") == Price(0.15, 0.6)


@pytest.mark.parametrize("text,needle", [
    ("providers:\n  qwen:\n    qwen-plus: {input: -1, output: 2}\n", "negative"),
    ("providers:\n  qwen:\n    qwen-plus: {input: 1}\n", "providers.qwen.qwen-plus"),
    ("providers:\n  qwen:\n    qwen-plus: {input: cheap, output: 2}\n", "numbers"),
    ("providers: [1, 2]\n", "PRICES_FILE"),
    ("- just\n- a list\n", "mapping"),
    ("providers: {qwen: {a: [}\n", "YAML"),
])
def test_bad_price_files_name_the_setting(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="PRICES_FILE") as e:
        load_prices(f)
    assert needle in str(e.value)


def test_missing_price_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_prices(tmp_path / "nope.yaml")
