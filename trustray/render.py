"""Turning a perspective's chat messages into a generation request, in either render mode.

``chat_template``: the messages go to the engine, which applies the model's own chat template.
``dt_compat``: the messages are rendered into one raw prompt string the way the DecodingTrust
fork's FastChat templates did, quirks included (see the scoring spec, "Prompt rendering").
"""

from __future__ import annotations

from collections.abc import Sequence

from trustray.benchmarks.base import EvalContext
from trustray.generation import GenerationRequest, Message, SamplingParams


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


def dt_compat_prompt(messages: Sequence[Message], template: str) -> str:
    """The prompt string the DecodingTrust fork produced for ``messages`` with ``template``."""
    raise NotImplementedError("dt_compat rendering is not implemented yet")
