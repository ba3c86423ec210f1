"""The tool registry: named tools with bilingual descriptions, pydantic parameters (their JSON
schema goes to the model as an OpenAI `tools` entry), an async executor with a timeout, and a
bound on the size of what goes back to the model.

`Registry.call` never raises for a bad call: unknown tools, arguments that are not JSON or fail
validation, timeouts and failures all come back as a `ToolResult` with `ok=False` and an error
the model (or the user) can read. Results are data, never instructions: they are scrubbed and
wrapped in a JSON envelope `{"tool", "ok", "data"}` before a model sees them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..render import scrub

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 15.0
DEFAULT_MAX_RESULT_CHARS = 4000
MAX_ARGUMENT_CHARS = 4000  # a model that sends megabytes of "arguments" gets an error, not a parse
TRUNCATION_MARKER = "…[已截断 / truncated {n} chars]"


class ToolError(Exception):
    """A failure the caller may read: Chinese first, then English, no internals."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description_zh: str
    description_en: str
    params: type[BaseModel]
    run: Callable[[Any], Awaitable[Any]]  # takes an instance of `params`
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry."""
        params = plain_schema(self.params.model_json_schema())
        params.setdefault("properties", {})
        return {"type": "function", "function": {
            "name": self.name, "description": f"{self.description_zh} / {self.description_en}",
            "parameters": params}}


def plain_schema(node: Any) -> Any:
    """The JSON schema without what stricter providers (Spark, ERNIE) trip on: `anyOf [X, null]`
    for optional fields becomes X (optional means "not required"), titles and null defaults go."""
    if isinstance(node, list):
        return [plain_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: ({n: plain_schema(f) for n, f in v.items()} if k == "properties" and isinstance(v, dict)
               else plain_schema(v))
           for k, v in node.items() if k != "title" and not (k == "default" and v is None)}
    branches = out.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in branches if b != {"type": "null"}]
        if len(kept) == 1 and isinstance(kept[0], dict):
            out.pop("anyOf")
            out = {**kept[0], **out}
    return out


@dataclass(slots=True)
class ToolResult:
    name: str
    arguments: dict[str, Any] | str  # parsed when they parsed, else the raw text (cut)
    ok: bool
    content: str  # the JSON envelope sent back to the model
    data: Any = None  # the scrubbed result, for offline formatting
    error: str | None = None
    call_id: str | None = None
    truncated: bool = False

    def summary(self) -> dict[str, Any]:
        """What `ask --json` lists under `tools`."""
        return {"name": self.name, "arguments": self.arguments, "ok": self.ok}


def scrub_data(value: Any) -> Any:
    """Scrub every string inside a JSON-like value (keys included): untrusted text stays inert."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(v) for v in value]
    return value


def _envelope(name: str, ok: bool, payload: dict[str, Any]) -> str:
    return json.dumps({"tool": name, "ok": ok, **payload}, ensure_ascii=False, default=str)


def _bounded(name: str, data: Any, limit: int) -> tuple[str, bool]:
    """The envelope, with the data cut to `limit` characters (then as text, marked) when too big."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return _envelope(name, True, {"data": data}), False
    cut = text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)
    return _envelope(name, True, {"data": cut, "truncated": True}), True


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ())) or "arguments"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


class Registry:
    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools or []:
            self.register(t)

    def register(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self, only: list[str] | None = None) -> list[dict[str, Any]]:
        return [t.schema() for n, t in self._tools.items() if only is None or n in only]

    def _error(self, name: str, arguments: dict[str, Any] | str, message: str, call_id: str | None,
               hint: str | None = None) -> ToolResult:
        payload: dict[str, Any] = {"error": scrub(message)}
        if hint:
            payload["hint"] = hint
        return ToolResult(name, arguments, False, _envelope(name, False, payload), None, scrub(message), call_id)

    async def call(self, name: str, arguments: str | dict[str, Any] | None, call_id: str | None = None) -> ToolResult:
        """Validate and run one call; never raises (except cancellation)."""
        name = (name or "").strip()
        raw = arguments if arguments is not None else ""
        shown: dict[str, Any] | str = raw if isinstance(raw, dict) else str(raw)[:500]
        tool = self._tools.get(name)
        if tool is None:
            return self._error(name or "?", shown, f"没有名为 {name!r} 的工具 / unknown tool {name!r}", call_id,
                               f"available tools: {', '.join(self._tools)}")
        if isinstance(raw, str):
            if len(raw) > MAX_ARGUMENT_CHARS:
                return self._error(name, shown, f"参数过长 / arguments longer than {MAX_ARGUMENT_CHARS} characters",
                                   call_id)
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except ValueError as e:
                return self._error(name, shown, f"参数不是合法的 JSON / arguments are not valid JSON: {e}", call_id,
                                   "send the arguments as one JSON object")
        else:
            parsed = raw
        if not isinstance(parsed, dict):
            return self._error(name, shown, "参数必须是 JSON 对象 / arguments must be a JSON object", call_id)
        shown = parsed
        try:
            params = tool.params.model_validate(parsed)
        except ValidationError as e:
            return self._error(name, shown, f"参数无效 / invalid arguments: {_validation_message(e)}", call_id,
                               "fix the arguments to match the tool's parameters and call it again")
        try:
            data = await asyncio.wait_for(tool.run(params), tool.timeout_s)
        except TimeoutError:
            return self._error(name, shown, f"工具超时 / the tool timed out after {tool.timeout_s:g} s", call_id)
        except ToolError as e:
            return self._error(name, shown, str(e), call_id)
        except Exception as e:  # a bug or an I/O failure inside a tool must not end the conversation
            log.warning("tool %s failed: %r", name, e)
            return self._error(name, shown, f"工具执行失败 / the tool failed ({type(e).__name__})", call_id)
        data = scrub_data(data)
        content, truncated = _bounded(name, data, tool.max_result_chars)
        return ToolResult(name, shown, True, content, data, None, call_id, truncated)


@dataclass(slots=True)
class ToolRuns:
    """The tools that ran for one answer, in order (shared by the loop and the offline engine)."""

    results: list[ToolResult] = field(default_factory=list)

    def add(self, r: ToolResult) -> None:
        self.results.append(r)

    def summaries(self) -> list[dict[str, Any]]:
        return [r.summary() for r in self.results]
