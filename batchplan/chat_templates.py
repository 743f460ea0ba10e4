"""Render a chat request into the prompt DashScope bills, as pieces.

A rendered prompt is a list of pieces: text, or ``SPECIAL`` for one special
token (<|im_start|> or <|im_end|>). Cutting at special tokens is exact, since
the tokenizer never merges across them, and it lets the counter reuse the count
of a piece it has seen before.

Rules (checked against recorded DashScope responses; see docs/counting.md):
- Without tools the prompt is plain ChatML, with no default system prompt:
  ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then
  ``<|im_start|>assistant\\n``.
- With tools, the model family's Hugging Face chat template: Qwen2.5 (with its
  default system text) or Qwen3 (without one).
- A final assistant message with ``partial: true`` is left open: no closing
  tokens and no generation header.
- ``response_format: {"type": "json_object"}`` adds 2 tokens.
"""

from __future__ import annotations

import json
from typing import Any

SPECIAL = None  # one special token: <|im_start|> or <|im_end|>
JSON_MODE_TOKENS = 2

QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
    '"arguments": <args-json-object>}\n</tool_call>'
)


def text_of(content: Any) -> str:
    """The billed text of a message's content: a string, or the text parts of a
    list joined as they are (``cache_control`` markers add nothing). Image,
    audio and video parts are not text and are not counted here."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type", "text") == "text")


def media_parts(body: dict[str, Any]) -> int:
    """How many non-text content parts (images, audio, video) a request holds."""
    count = 0
    for message in body.get("messages", ()):
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for part in content if part.get("type", "text") != "text")
    return count


def is_partial(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]
    return last.get("role") == "assistant" and last.get("partial") is True


def render(body: dict[str, Any], family: str = "qwen3") -> list[str | None]:
    """The billed prompt of a chat request body, as pieces."""
    messages = body["messages"]
    tools = body.get("tools") or []
    uses_tools = bool(tools) or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)
    pieces: list[str | None] = []
    if uses_tools:
        messages = _render_tools_preamble(pieces, messages, tools, family)
    partial = is_partial(messages) if messages else False
    last = len(messages) - 1
    previous_role = None
    for i, message in enumerate(messages):
        role = message["role"]
        content = text_of(message.get("content"))
        if role == "tool":
            _render_tool_response(pieces, content, previous_role == "tool", _next_role(messages, i) == "tool")
        elif role == "assistant" and message.get("tool_calls"):
            pieces += [SPECIAL, _assistant_with_calls(content, message["tool_calls"], family), SPECIAL, "\n"]
        elif i == last and partial:
            pieces += [SPECIAL, f"{role}\n{content}"]
        else:
            pieces += [SPECIAL, f"{role}\n{content}", SPECIAL, "\n"]
        previous_role = role
    if not partial:
        pieces += [SPECIAL, "assistant\n"]
    if (body.get("response_format") or {}).get("type") == "json_object":  # null is absent, as validate reads it
        # Recorded, not derived: json_object added 2 prompt tokens on
        # qwen-max and qwen-flash. Represented as two special pieces.
        pieces += [SPECIAL] * JSON_MODE_TOKENS
    return pieces


def _next_role(messages: list[dict[str, Any]], i: int) -> str | None:
    return messages[i + 1]["role"] if i + 1 < len(messages) else None


def _render_tools_preamble(pieces: list[str | None], messages: list[dict[str, Any]], tools: list, family: str):
    """Open the prompt with the tools system turn (when tools are given) and
    return the messages still to render."""
    if not tools:
        return messages
    has_system = messages and messages[0]["role"] == "system"
    system = text_of(messages[0].get("content")) if has_system else None
    if family == "qwen2.5":
        head = (system if system is not None else QWEN25_DEFAULT_SYSTEM) + "\n\n"
    else:
        head = system + "\n\n" if system is not None else ""
    # Hugging Face's tojson: json.dumps with ensure_ascii=False, default separators.
    tool_lines = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
    pieces += [SPECIAL, "system\n" + head + TOOLS_INTRO + tool_lines + TOOLS_OUTRO, SPECIAL, "\n"]
    return messages[1:] if has_system else messages


def _assistant_with_calls(content: str, tool_calls: list[dict[str, Any]], family: str) -> str:
    text = "assistant"
    if family == "qwen2.5":
        text += "\n" + content if content else ""
        sep_first = "\n"
    else:
        text += "\n" + content
        sep_first = "\n" if content else ""
    for j, call in enumerate(tool_calls):
        function = call.get("function", call) if isinstance(call, dict) else {}
        arguments = function.get("arguments", {})
        # OpenAI-style arguments are a JSON string: written as they are
        # (Qwen3's template does so; assumed for Qwen2.5 too).
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        text += (sep_first if j == 0 else "\n") + '<tool_call>\n{"name": "' + str(function.get("name", "")) + '", "arguments": ' + arguments + "}\n</tool_call>"
    return text


def _render_tool_response(pieces: list[str | None], content: str, follows_tool: bool, precedes_tool: bool) -> None:
    """Consecutive tool messages merge into one user turn of <tool_response> blocks."""
    block = "\n<tool_response>\n" + content + "\n</tool_response>"
    if follows_tool:
        pieces[-1] = pieces[-1] + block  # continue the open user turn
    else:
        pieces += [SPECIAL, "user" + block]
    if not precedes_tool:
        pieces += [SPECIAL, "\n"]
