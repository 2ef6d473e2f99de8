"""Turning a perspective's chat messages into a generation request, in either render mode.

``chat_template``: the messages go to the engine, which applies the model's own chat template.
``dt_compat``: the messages are rendered into one raw prompt string the way the DecodingTrust
fork's FastChat templates did, quirks included (see the scoring spec, "Prompt rendering").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustray.generation import GenerationRequest, Message, SamplingParams

if TYPE_CHECKING:  # a runtime import would be circular (benchmarks import this module)
    from trustray.benchmarks.base import EvalContext


def build_request(
    request_id: str,
    messages: Sequence[Message],
    sampling: SamplingParams,
    seed: int,
    ctx: EvalContext,
) -> GenerationRequest:
    """A request for ``messages`` rendered per ``ctx.render``."""
    if ctx.render == "chat_template":
        return GenerationRequest(request_id=request_id, sampling=sampling, seed=seed, messages=tuple(messages))
    return GenerationRequest(
        request_id=request_id, sampling=sampling, seed=seed, prompt=dt_compat_prompt(messages, ctx.dt_template)
    )


@dataclass(frozen=True)
class _FastChatTemplate:
    """The parts of a FastChat (0.2.2x) ``Conversation`` that shape the prompt string."""

    system: str  # the whole system prefix; the fork overwrote it with the raw system message
    roles: tuple[str, str]
    style: str  # "llama2" or "colon_two"
    sep: str
    sep2: str


# FastChat's built-in templates as the fork used them (not DecodingTrust constants, so they
# live here rather than in the data bundle).
_LLAMA2_DEFAULT_SYSTEM = (
    "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant. Always answer as helpfully as "
    "possible, while being safe.  Your answers should not include any harmful, unethical, racist, sexist, "
    "toxic, dangerous, or illegal content. Please ensure that your responses are socially unbiased and "
    "positive in nature.\n\nIf a question does not make any sense, or is not factually coherent, explain "
    "why instead of answering something not correct. If you don't know the answer to a question, please "
    "don't share false information.\n<</SYS>>\n\n"
)
_VICUNA_DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
DT_TEMPLATES: dict[str, _FastChatTemplate] = {
    "llama-2": _FastChatTemplate(_LLAMA2_DEFAULT_SYSTEM, ("[INST]", "[/INST]"), "llama2", " ", " </s><s>"),
    "vicuna_v1.1": _FastChatTemplate(_VICUNA_DEFAULT_SYSTEM, ("USER", "ASSISTANT"), "colon_two", " ", "</s>"),
}


def dt_compat_prompt(messages: Sequence[Message], template: str) -> str:
    """The prompt string the DecodingTrust fork produced for ``messages`` with ``template``.

    The fork assigned every system message to the conversation's ``system`` attribute, which
    in its FastChat version held the *whole* prefix. Hence: a system message S replaces the
    template prefix verbatim (llama-2 loses ``<s>[INST] <<SYS>>``); several system messages
    (fairness demos) leave only the last; no system message keeps the template default.
    """
    try:
        t = DT_TEMPLATES[template]
    except KeyError:
        raise ValueError(
            f"unknown dt_compat template {template!r} (known: {', '.join(sorted(DT_TEMPLATES))})"
        ) from None
    system = t.system
    turns: list[tuple[str, str | None]] = []
    for m in messages:
        if m.role == "system":
            system = m.content
        else:
            turns.append((t.roles[0] if m.role == "user" else t.roles[1], m.content))
    turns.append((t.roles[1], None))  # the generation slot
    seps = (t.sep, t.sep2)
    if t.style == "llama2":
        out = ""
        for i, (role, text) in enumerate(turns):
            if text:
                out += system + text if i == 0 else f"{role} {text}{seps[i % 2]}"
            else:
                out += role
        return out
    out = system + seps[0]
    for i, (role, text) in enumerate(turns):
        out += f"{role}: {text}{seps[i % 2]}" if text else f"{role}:"
    return out
