"""Helpers shared by the DecodingTrust classification perspectives (pure, no I/O of their own).

The fork's ``Chat.do_classification`` builds one of two message layouts: zero-shot
``[system, user: task + "\\n" + input]`` or few-shot ``[system, user: task, assistant: ack,
(user: demo, assistant: label.capitalize())..., user: input]``. The system prompts and the
acknowledgement come from ``prompts.json`` (perspective ``shared``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from trustray.benchmarks.base import EvalContext, Item, Parsed
from trustray.data import DataDir
from trustray.generation import GenerationRequest, Message, SamplingParams

T = TypeVar("T")

# Smoke runs only need a label word or digit back; longer answers are cut by the parsers anyway.
SMOKE_MAX_TOKENS = 8


def by_profile(ctx: EvalContext, smoke: T, quick: T, paper: T) -> T:
    """The value for the context's profile."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[ctx.profile]


def max_tokens(ctx: EvalContext, spec_tokens: int) -> int:
    """The spec's ``max_tokens``, shortened on the smoke profile."""
    return min(spec_tokens, SMOKE_MAX_TOKENS) if ctx.profile == "smoke" else spec_tokens


def item_id(perspective: str, scenario: str, source: str, line: int | str) -> str:
    """``perspective/scenario/source-file/line``; ``source`` is relative to the data directory."""
    return f"{perspective}/{scenario}/{source}/{line}"


def shared_prompts(data: DataDir) -> dict[str, str]:
    """The chat-layout constants of ``Chat.do_classification``."""
    return {
        "system_zero_shot": data.constant("shared", "SYSTEM_PROMPT_ZERO_SHOT"),
        "system_few_shot": data.constant("shared", "SYSTEM_PROMPT_FEW_SHOT"),
        "ack": data.constant("shared", "FEW_SHOT_ASSISTANT_ACK"),
    }


def classification_messages(
    prompts: Mapping[str, str], task: str, text: str, examples: Sequence[Sequence[str]]
) -> list[Message]:
    """The messages ``Chat.do_classification`` sends (``example_prefix=False``)."""
    if not examples:
        return [Message("system", prompts["system_zero_shot"]), Message("user", f"{task}\n{text}")]
    msgs = [
        Message("system", prompts["system_few_shot"]),
        Message("user", task),
        Message("assistant", prompts["ack"]),
    ]
    for demo_input, demo_label in examples:
        msgs.append(Message("user", demo_input))
        msgs.append(Message("assistant", str(demo_label).capitalize()))
    msgs.append(Message("user", text))
    return msgs


def chat_request(item: Item, messages: Sequence[Message], tokens: int, ctx: EvalContext) -> GenerationRequest:
    """A greedy request for ``messages``, rendered per ``ctx.render`` with the item's seed."""
    # Imported here: trustray.benchmarks.render imports trustray.benchmarks.base, whose package imports us.
    from trustray.benchmarks import render
    from trustray.benchmarks.base import item_seed

    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens(ctx, tokens))
    return render.build_request(item.item_id, messages, sampling, item_seed(item, ctx), ctx)


def messages_from_payload(payload: Mapping[str, Any]) -> list[Message]:
    """Messages stored in an item payload as ``[[role, content], ...]``."""
    return [Message(role, content) for role, content in payload["messages"]]


def to_pairs(messages: Sequence[Message]) -> list[list[str]]:
    """Messages as JSON-serialisable ``[[role, content], ...]`` for an item payload."""
    return [[m.role, m.content] for m in messages]


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; raises on an empty sequence (callers check availability first)."""
    if not values:
        raise ValueError("mean of an empty sequence")
    return sum(values) / len(values)


def no_label(parsed: Parsed) -> bool:
    """Refused or unparsed: the answer gives no valid label."""
    return parsed.refused or parsed.unparsed


REFERENCE_NAMES = {
    "fork": "the paper's fork (decoding-comp-trust/DecodingTrust)",
    "upstream": "upstream AI-secure/DecodingTrust",
}


def reference_note(ctx: EvalContext) -> str:
    """The result note naming the DecodingTrust reference the rows were scored against."""
    return f"DecodingTrust reference: {ctx.dt_reference} ({REFERENCE_NAMES[ctx.dt_reference]})"
