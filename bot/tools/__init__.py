"""Tool use: a registry of the project's own capabilities that models call (OpenAI `tools`)
and the offline engine routes to by intent.

- `registry`: Tool, Registry (validation, timeouts, bounded and scrubbed results), ToolError
- `builtin`: the built-in tools; `registry_for(app)` / `set_registry(app, reg)`
- `loop`: the tool loop used by Assistant.ask/chat; `ToolNote` tells adapters which tools ran
- `intents`: offline intent routing; `present`: tool results as plain text
- `web`: summarize_url with the SSRF policy; `calculator`: AST arithmetic; `feeds`: news and hot search
"""

from __future__ import annotations

from .loop import ToolNote
from .registry import Registry, Tool, ToolError, ToolResult

__all__ = ["Registry", "Tool", "ToolError", "ToolNote", "ToolResult"]
