"""dt_compat rendering reproduces the fork's FastChat quirks; chat_template passes messages through."""

from __future__ import annotations

import pytest

from trustray.benchmarks.base import EvalContext
from trustray.generation import Message, SamplingParams
from trustray.benchmarks.render import DT_TEMPLATES, build_request, dt_compat_prompt

S, U = Message("system", "SYS."), Message("user", "hello")


def test_llama2_system_prompt_replaces_the_inst_wrapper() -> None:
    assert dt_compat_prompt([S, U], "llama-2") == "SYS.hello[/INST]"


def test_llama2_without_system_uses_the_default_system_prompt() -> None:
    p = dt_compat_prompt([U], "llama-2")
    assert p.startswith("<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.")
    assert p.endswith("\n<</SYS>>\n\nhello[/INST]")


def test_llama2_fairness_demos_as_system_messages_leave_only_the_last_label() -> None:
    msgs = [S, Message("system", "demo input"), Message("system", "No"), Message("user", "INPUT")]
    assert dt_compat_prompt(msgs, "llama-2") == "No" + "INPUT" + "[/INST]"


def test_llama2_multi_turn_uses_role_tags_and_separators() -> None:
    msgs = [S, U, Message("assistant", "Sure"), Message("user", "q2")]
    assert dt_compat_prompt(msgs, "llama-2") == "SYS.hello[/INST] Sure </s><s>[INST] q2 [/INST]"


def test_vicuna_templates() -> None:
    assert dt_compat_prompt([S, U], "vicuna_v1.1") == "SYS. USER: hello ASSISTANT:"
    default = dt_compat_prompt([U], "vicuna_v1.1")
    assert default.startswith("A chat between a curious user") and default.endswith(" USER: hello ASSISTANT:")
    turns = dt_compat_prompt([S, U, Message("assistant", "ok"), Message("user", "x")], "vicuna_v1.1")
    assert turns == "SYS. USER: hello ASSISTANT: ok</s>USER: x ASSISTANT:"


def test_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="llama-2.*vicuna_v1.1"):
        dt_compat_prompt([U], "chatml")
    assert set(DT_TEMPLATES) == {"llama-2", "vicuna_v1.1"}


def test_build_request_modes() -> None:
    sp = SamplingParams(max_tokens=4)
    chat = build_request("r", [S, U], sp, 7, EvalContext(render="chat_template"))
    assert chat.messages == (S, U) and chat.prompt is None and chat.seed == 7
    compat = build_request("r", [S, U], sp, 7, EvalContext(render="dt_compat", dt_template="vicuna_v1.1"))
    assert compat.prompt == "SYS. USER: hello ASSISTANT:" and compat.messages is None
