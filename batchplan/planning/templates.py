"""Render a chat request into the prompt DashScope bills, as pieces.

A rendered prompt is a list of pieces: text, or ``SPECIAL`` for one special
token (<|im_start|>, <|im_end|>, or a vision mark around an image). Cutting at special tokens is exact, since
the tokenizer never merges across them, and it lets the counter reuse the count
of a piece it has seen before.

Rules (checked against recorded DashScope responses; see docs/counting.md):
- Without tools the prompt is plain ChatML, with no default system prompt:
  ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then
  ``<|im_start|>assistant\\n``.
- With tools, the model family's Hugging Face chat template: Qwen2.5 (with its
  default system text) or Qwen3 (without one). The Qwen3 path follows the
  template token for token (tests/planning/test_qwen3_template.py renders the real
  template with jinja2 and compares), including its ``<think>`` handling of
  assistant turns after the last user query; the generation prompt gets no
  empty think block (DashScope does not bill one; see docs/counting.md).
- An image part is ``Picture N: <|vision_start|>`` + its grid tokens +
  ``<|vision_end|>`` in place (Qwen2-VL's template with add_vision_id; the
  recorded qwen-vl-plus responses bill exactly that): the two marks are
  ``SPECIAL`` pieces here, the grid tokens are added by ``images`` (they
  depend on the image's size and the model).
- A final assistant message with ``partial: true`` is left open: no closing
  tokens and no generation header.
- ``response_format: {"type": "json_object"}`` adds 2 tokens.
"""

from __future__ import annotations

import json
from typing import Any

SPECIAL = None  # one special token: <|im_start|>, <|im_end|>, <|vision_start|> or <|vision_end|>
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


IMAGE_TYPES = ("image_url", "image")


def is_image(part: dict[str, Any]) -> bool:
    return part.get("type") in IMAGE_TYPES


def counted_images(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The image parts of a message that are rendered (and counted) in place:
    those of user and system turns. Images elsewhere (assistant turns, tool
    responses) are not: they stay uncounted, with the media warning."""
    content = message.get("content")
    if not isinstance(content, list) or message.get("role") not in ("user", "system"):
        return []
    return [part for part in content if is_image(part)]


def has_images(body: dict[str, Any]) -> bool:
    """Whether any message holds an image the renderer places (cheap when no
    content is a list)."""
    for message in body.get("messages", ()):
        if type(message.get("content")) is list and counted_images(message):
            return True
    return False


def _turn(pieces: list[str | None], head: str, message: dict[str, Any], text: str, close: bool, seen: int) -> int:
    """One turn: SPECIAL, head + text, then (when ``close``) SPECIAL and a
    newline. An image in the content becomes "Picture N: " and its two vision
    marks (SPECIAL pieces) where it stands, N counting the request's images;
    returns the images seen so far."""
    if counted_images(message):
        pieces.append(SPECIAL)
        run = head
        for part in message["content"]:
            kind = part.get("type", "text")
            if kind == "text":
                run += part.get("text", "")
            elif kind in IMAGE_TYPES:
                seen += 1
                pieces += [run + f"Picture {seen}: ", SPECIAL, SPECIAL]
                run = ""
        pieces.append(run)
    else:
        pieces += [SPECIAL, head + text]
    if close:
        pieces += [SPECIAL, "\n"]
    return seen


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
    # Qwen3's template writes <think> blocks into assistant turns after the
    # last user query; only the tools path uses that template.
    last_query = _last_query_index(messages) if uses_tools and family != "qwen2.5" else None
    previous_role = None
    images = 0  # images so far: DashScope writes "Picture N: " before each
    for i, message in enumerate(messages):
        role = message["role"]
        content = text_of(message.get("content"))
        if role == "tool":
            _render_tool_response(pieces, content, previous_role == "tool", _next_role(messages, i) == "tool")
        elif i == last and partial:
            images = _turn(pieces, f"{role}\n", message, content, False, images)
        elif role == "assistant" and last_query is not None:
            text = _qwen3_assistant(message, content, i > last_query, i == last)
            pieces += [SPECIAL, text, SPECIAL, "\n"]
        elif role == "assistant" and message.get("tool_calls"):
            pieces += [SPECIAL, _assistant_with_calls(content, message["tool_calls"], family), SPECIAL, "\n"]
        elif type(message.get("content")) is list:
            images = _turn(pieces, f"{role}\n", message, content, True, images)  # images are cut in here
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


def _last_query_index(messages: list[dict[str, Any]]) -> int:
    """Qwen3's ``ns.last_query_index``: the last user message with string
    content that is not a bare <tool_response> block, else the last index."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and not (
            content.startswith("<tool_response>") and content.endswith("</tool_response>")
        ):
            return i
    return len(messages) - 1


def _qwen3_assistant(message: dict[str, Any], content: str, after_query: bool, is_last: bool) -> str:
    """An assistant turn (after <|im_start|>, before <|im_end|>) as Qwen3's
    template writes it: reasoning from ``reasoning_content`` or from a
    ``<think>`` block in the content; the block is kept only after the last
    user query, on the last turn or where there is reasoning."""
    reasoning = message.get("reasoning_content")
    if not isinstance(reasoning, str):
        reasoning = ""
        if "</think>" in content:
            reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
            content = content.split("</think>")[-1].lstrip("\n")
    if after_query and (is_last or reasoning):
        text = "assistant\n<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n")
    else:
        text = "assistant\n" + content
    calls = message.get("tool_calls")
    if calls:
        text += _tool_calls(content, calls, "qwen3")
    return text


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
    if family == "qwen2.5":
        return "assistant" + ("\n" + content if content else "") + _tool_calls(content, tool_calls, family)
    return "assistant\n" + content + _tool_calls(content, tool_calls, family)


def _tool_calls(content: str, tool_calls: list[dict[str, Any]], family: str) -> str:
    """The <tool_call> blocks of an assistant turn. Qwen3 puts no newline
    before the first one when the content is empty; Qwen2.5 always does."""
    sep_first = "\n" if family == "qwen2.5" or content else ""
    text = ""
    for j, call in enumerate(tool_calls):
        # The template uses tool_call.function when it is there (and not empty).
        function = (call.get("function") or call) if isinstance(call, dict) else {}
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
