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
  empty think block (DashScope does not bill one for qwen-plus or qwen-flash;
  see docs/counting.md).
- Each model is counted by a family (``FAMILIES``, named by the catalog's
  ``template``): which tool template, whether the Qwen3 tokenizer's tags are
  one token each, whether a non-thinking turn bills the empty think block
  (qwen-turbo), whether images get ``Picture N: ``, and which vocabulary.
  Qwen3.5/3.6 have their own template (``_render_qwen35``), Qwen-MT a
  translation prompt (``_translation``). Each rule cites its records in
  docs/counting.md.
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
import re
from dataclasses import dataclass
from typing import Any

SPECIAL = None  # one special token: <|im_start|>, <|im_end|>, <|vision_start|> or <|vision_end|>
JSON_MODE_TOKENS = 2


@dataclass(frozen=True)
class Family:
    """How one family of models is billed (the catalog's ``template``).

    ``tools``: which chat template renders tools and tool turns.
    ``tag_tokens``: ``<tool_call>``, ``</tool_call>``, ``<tool_response>``,
    ``</tool_response>``, ``<think>`` and ``</think>`` are one token each (the
    Qwen3 tokenizers' added tokens) instead of text in the Qwen vocabulary.
    ``empty_think``: a non-thinking request's generation prompt carries the
    empty think block ``<think>\\n\\n</think>\\n\\n``.
    ``image_label``: ``Picture N: `` is written before each image.
    ``vocabulary``: "qwen" (the dashscope wheel's) or "qwen3.5" (see
    ``planning.vocabularies``). Each rule is recorded; see docs/counting.md.
    """

    tools: str = "qwen3"  # qwen2.5 | qwen3 | qwen3.5
    tag_tokens: bool = False
    empty_think: bool = False
    image_label: bool = True
    vocabulary: str = "qwen"
    translation: bool = False  # Qwen-MT: translation_options are billed (see _translation)


FAMILIES = {
    # qwen-max, qwq-plus, qwen-vl-max/plus (Qwen2.5-based).
    "qwen2.5": Family(tools="qwen2.5"),
    # qwen-plus: the Qwen3 template, counted in the Qwen vocabulary with the
    # tags as text (the 283 record; single-token tags would give 257).
    "qwen3": Family(),
    # qwen-flash: the Qwen3 template with the tags as single tokens (three
    # recorded tool requests, exact only so) and no empty think block.
    "qwen3-tags": Family(tag_tokens=True),
    # qwen-turbo (Qwen3 hybrid): as qwen3-tags, and the empty think block of
    # a non-thinking turn is billed (two recorded requests, +4 each).
    "qwen3-hybrid": Family(tag_tokens=True, empty_think=True),
    # Qwen3-VL (qwen3-vl-plus/flash): the Qwen3 tokenizer and template, no
    # "Picture N: " (its template's add_vision_id is off). ASSUMPTION: no record.
    "qwen3-vl": Family(tag_tokens=True, image_label=False),
    # qwen3.5/3.6/3.7/3.8: their own template and vocabulary (see _render_qwen35).
    "qwen3.5": Family(tools="qwen3.5", tag_tokens=True, image_label=False, vocabulary="qwen3.5"),
    # qwen-mt-*: ChatML of the one user turn plus the translation prompt.
    "qwen-mt": Family(translation=True),
}
DEFAULT_FAMILY = FAMILIES["qwen3"]

# The Qwen3 tokenizers' added tokens that DashScope bills as one token in the
# tag_tokens families (found anywhere in the prompt, as a tokenizer does).
TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
_TAG_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in TAGS) + ")")
EMPTY_THINK = "<think>\n\n</think>\n\n"


def family_of(name: str | None) -> Family:
    """The Family of a catalog ``template`` value (qwen3 when unknown)."""
    return FAMILIES.get(name or "", DEFAULT_FAMILY)

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


def _turn(pieces: list[str | None], head: str, message: dict[str, Any], text: str, close: bool, seen: int,
          label: bool = True) -> int:
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
                pieces += [run + (f"Picture {seen}: " if label else ""), SPECIAL, SPECIAL]
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


def render(body: dict[str, Any], template: str = "qwen3") -> list[str | None]:
    """The billed prompt of a chat request body, as pieces, for the catalog
    ``template`` (a key of FAMILIES) of its model."""
    fam = family_of(template)
    if fam.tools == "qwen3.5":
        pieces = _render_qwen35(body)
    else:
        pieces = _render_chatml(body, fam, "qwen2.5" if fam.tools == "qwen2.5" else "qwen3")
        if fam.translation:
            pieces += _translation(body)
    return _cut_tags(pieces) if fam.tag_tokens else pieces


def _cut_tags(pieces: list[str | None]) -> list[str | None]:
    """Each tag in a text piece becomes a SPECIAL piece (one token), as the
    Qwen3 tokenizers read their added tokens anywhere in the text."""
    out: list[str | None] = []
    for piece in pieces:
        if piece is SPECIAL or "<t" not in piece and "</t" not in piece:
            out.append(piece)
            continue
        for i, part in enumerate(_TAG_SPLIT.split(piece)):
            if i % 2:
                out.append(SPECIAL)
            elif part:
                out.append(part)
    return out


def _render_chatml(body: dict[str, Any], fam: Family, family: str) -> list[str | None]:
    """ChatML, with the Qwen2.5 or Qwen3 template's tool handling."""
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
            images = _turn(pieces, f"{role}\n", message, content, False, images, fam.image_label)
        elif role == "assistant" and last_query is not None:
            text = _qwen3_assistant(message, content, i > last_query, i == last)
            pieces += [SPECIAL, text, SPECIAL, "\n"]
        elif role == "assistant" and message.get("tool_calls"):
            pieces += [SPECIAL, _assistant_with_calls(content, message["tool_calls"], family), SPECIAL, "\n"]
        elif type(message.get("content")) is list:
            images = _turn(pieces, f"{role}\n", message, content, True, images, fam.image_label)  # images cut in here
        else:
            pieces += [SPECIAL, f"{role}\n{content}", SPECIAL, "\n"]
        previous_role = role
    if not partial:
        # The empty think block only where it was recorded (qwen3-hybrid);
        # DashScope bills none for qwen-plus and qwen-flash.
        thinking = body.get("enable_thinking") is True
        pieces += [SPECIAL, "assistant\n" + (EMPTY_THINK if fam.empty_think and not thinking else "")]
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


def _reasoning_and_content(message: dict[str, Any], content: str) -> tuple[str, str]:
    """An assistant turn's reasoning (``reasoning_content``, else a ``<think>``
    block in the content) and its content without that block, as the Qwen3
    and Qwen3.5 templates both split them."""
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        return reasoning, content
    if "</think>" not in content:
        return "", content
    return (content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n"),
            content.split("</think>")[-1].lstrip("\n"))


def _qwen3_assistant(message: dict[str, Any], content: str, after_query: bool, is_last: bool) -> str:
    """An assistant turn (after <|im_start|>, before <|im_end|>) as Qwen3's
    template writes it: reasoning from ``reasoning_content`` or from a
    ``<think>`` block in the content; the block is kept only after the last
    user query, on the last turn or where there is reasoning."""
    reasoning, content = _reasoning_and_content(message, content)
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


# -- Qwen3.5 / Qwen3.6 ---------------------------------------------------------

QWEN35_TOOLS_INTRO = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
QWEN35_TOOLS_OUTRO = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified "
    "format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in natural "
    "language BEFORE the function call, but NOT after\n- If there is no function call available, answer the question "
    "like normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>"
)


def _content35(pieces: list[str | None], content: Any, head: str, tail: str) -> None:
    """head + the content, trimmed as the template's ``render_content|trim``
    does, + tail. Images are their two vision marks (SPECIAL), with no
    "Picture N: " (the template's add_vision_id is off by default); their
    grid tokens are added by ``images``."""
    if not isinstance(content, list) or not any(is_image(p) for p in content if isinstance(p, dict)):
        pieces.append(head + text_of(content).strip() + tail)
        return
    runs: list[str | None] = [""]
    for part in content:
        if is_image(part):
            runs += [SPECIAL, SPECIAL, ""]
        elif part.get("type", "text") == "text":
            runs[-1] += part.get("text", "")
    runs[0] = runs[0].lstrip()
    runs[-1] = runs[-1].rstrip()
    runs[0] = head + runs[0]
    runs[-1] += tail
    pieces += [r for r in runs if r is SPECIAL or r]


def _render_qwen35(body: dict[str, Any]) -> list[str | None]:
    """The Qwen3.5/3.6 chat template (the Qwen3-Coder style: XML tool calls
    with ``<function=...>``/``<parameter=...>``, tool JSON as ``tojson``
    writes it). Its generation prompt is ``<think>\\n`` when thinking (the
    default) and the empty think block with ``enable_thinking: false``. Two
    recorded qwen3.6-plus requests are exact with it (docs/counting.md)."""
    messages = body["messages"]
    tools = body.get("tools") or []
    pieces: list[str | None] = []
    system = messages[0] if messages and messages[0].get("role") == "system" else None
    if tools:
        text = "system\n" + QWEN35_TOOLS_INTRO + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
        text += QWEN35_TOOLS_OUTRO
        own = text_of(system.get("content")).strip() if system else ""
        pieces += [SPECIAL, text + ("\n\n" + own if own else ""), SPECIAL, "\n"]
    elif system is not None:
        pieces.append(SPECIAL)
        _content35(pieces, system.get("content"), "system\n", "")
        pieces += [SPECIAL, "\n"]
    last_query = len(messages) - 1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            text = text_of(messages[i].get("content")).strip()
            if not (text.startswith("<tool_response>") and text.endswith("</tool_response>")):
                last_query = i
                break
    partial = is_partial(messages) if messages else False
    last = len(messages) - 1
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system":
            continue  # only the first is rendered (above); the template refuses others
        if role == "user":
            pieces.append(SPECIAL)
            _content35(pieces, message.get("content"), "user\n", "")
            pieces += [SPECIAL, "\n"]
        elif role == "assistant":
            pieces += [SPECIAL, _assistant35(message, i > last_query)]
            if not (i == last and partial):
                pieces += [SPECIAL, "\n"]
        elif role == "tool":
            block = "\n<tool_response>\n" + text_of(message.get("content")).strip() + "\n</tool_response>"
            if i > 0 and messages[i - 1].get("role") == "tool":
                pieces[-1] += block
            else:
                pieces += [SPECIAL, "user" + block]
            if i == last or messages[i + 1].get("role") != "tool":
                pieces += [SPECIAL, "\n"]
    if not partial:
        thinking = body.get("enable_thinking") is not False  # thinks by default
        pieces += [SPECIAL, "assistant\n" + ("<think>\n" if thinking else EMPTY_THINK)]
    if (body.get("response_format") or {}).get("type") == "json_object":
        pieces += [SPECIAL] * JSON_MODE_TOKENS  # ASSUMPTION: as recorded on qwen-max and qwen-flash
    return pieces


def _assistant35(message: dict[str, Any], after_query: bool) -> str:
    content = text_of(message.get("content")).strip()
    reasoning, content = _reasoning_and_content(message, content)
    if after_query:
        text = "assistant\n<think>\n" + reasoning.strip() + "\n</think>\n\n" + content
    else:
        text = "assistant\n" + content
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = (call.get("function") or call) if isinstance(call, dict) else {}
        name = str(function.get("name", ""))
        if j == 0:
            text += ("\n\n" if content.strip() else "") + "<tool_call>\n<function=" + name + ">\n"
        else:
            text += "\n<tool_call>\n<function=" + name + ">\n"
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            # OpenAI-style arguments are a JSON string; the template iterates
            # an object, so DashScope is taken to parse it (ASSUMPTION). Text
            # that is not a JSON object is written as it is.
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                text += arguments + "\n" if arguments else ""
                parsed = {}
            arguments = parsed
        if isinstance(arguments, dict):
            for key, value in arguments.items():
                shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                text += "<parameter=" + str(key) + ">\n" + shown + "\n</parameter>\n"
        text += "</function>\n</tool_call>"
    return text


# -- Qwen-MT -------------------------------------------------------------------

# Tokens of the translation prompt around a request with only source_lang
# and target_lang: a recorded qwen-mt-plus request (the API reference's own
# example, Nov 2025: 53 prompt tokens for a 15-token ChatML turn).
MT_BASE_TOKENS = 38
# Tokens of the scaffolding that terms, tm_list and domains add beyond their
# own text: FITTED to the one recorded request that sets all three (qwen-mt-plus,
# Jul 2025: 111 = 15 + 38 + 16 of their text + 42). How the 42 split between
# the three, and how they grow with more entries, is not known: such requests
# carry an approximate_count warning.
MT_OPTIONS_TOKENS = 42


def translation_extras(body: dict[str, Any]) -> list[str]:
    """The texts of ``translation_options`` terms, tm_list and domains."""
    options = body.get("translation_options")
    if not isinstance(options, dict):
        return []
    texts = []
    for key in ("terms", "tm_list"):
        for entry in options.get(key) or ():
            if isinstance(entry, dict):
                texts += [str(entry.get("source", "")), str(entry.get("target", ""))]
    if isinstance(options.get("domains"), str):
        texts.append(options["domains"])
    return texts


def _translation(body: dict[str, Any]) -> list[str | None]:
    """The translation prompt, as pieces: the recorded fixed part (SPECIAL
    pieces, one token each) and the terms / memory / domain texts."""
    extras = translation_extras(body)
    pieces: list[str | None] = [SPECIAL] * MT_BASE_TOKENS
    if extras:
        pieces += [SPECIAL] * MT_OPTIONS_TOKENS
        pieces += [text for text in extras if text]
    return pieces


def request_warnings(body: dict[str, Any], template: str | None) -> list[tuple[str, str]]:
    """(warning kind, detail) for what a request's rendering cannot settle:
    translation options counted by a fit, media the Batch API cannot fetch.
    Kinds are planning.aggregate's (named here as strings, to keep this
    module below it)."""
    found = []
    if family_of(template).translation and translation_extras(body):
        found.append(("approximate_count", "translation_options terms/tm_list/domains: their prompt is fitted to one "
                                           "recorded request (docs/counting.md)"))
    if type(body.get("messages")) is list and any(type(m) is dict and type(m.get("content")) is list
                                                  for m in body["messages"]):
        from batchplan.planning.validate import media_urls, non_public_media_url

        for url in media_urls(body):
            why = non_public_media_url(url)
            if why:
                shown = url if len(url) <= 80 else url[:77] + "..."
                found.append(("media_url_not_public", f"{shown}: {why}"))
    return found
