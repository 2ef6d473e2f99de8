"""Strided-window perplexity: window coverage and agreement with transformers' own loss.

A tiny randomly initialised Llama and a byte-level tokenizer keep these tests fast; the
embedded model's WikiText-2 perplexity is checked in the engine smoke test.
"""

from __future__ import annotations

import math

import pytest
import torch

from trustray.utility import perplexity, window_spans


class ByteTokenizer:
    """Bytes as token ids: enough to feed ``perplexity`` a deterministic id sequence."""

    def __call__(self, text, add_special_tokens=False, return_tensors="pt"):
        return {"input_ids": torch.tensor([list(text.encode("utf-8"))])}


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(10, 4, 2), (100, 32, 16), (5, 16, 4), (2, 4, 1), (41, 8, 7)]
)
def test_every_position_after_the_first_is_scored_once(n, window, stride):
    scored = []
    for begin, end, first in window_spans(n, window, stride, None):
        assert end - begin <= window and begin < first
        scored.extend(range(first, end))
    assert scored == list(range(1, n))


def test_disjoint_windows_cannot_score_their_first_token():
    spans = window_spans(33, 8, 8, None)
    assert [s[2] for s in spans] == [1, 9, 17, 25, 33][: len(spans)]
    assert sum(end - first for _, end, first in spans) == 32 - 4


def test_max_windows_truncates():
    spans = window_spans(1000, 64, 32, 3)
    assert len(spans) == 3 and spans[-1][1] == 2 * 32 + 64
    with pytest.raises(ValueError):
        window_spans(10, 4, 8, None)


def test_single_window_equals_transformers_loss(tiny_lm):
    text = "The quick brown fox jumps over the lazy dog. " * 2
    ids = torch.tensor([list(text.encode())])
    with torch.no_grad():
        ref = tiny_lm(input_ids=ids, labels=ids).loss.item()
    r = perplexity(tiny_lm, ByteTokenizer(), text=text, window=128, stride=64, profile="paper")
    assert r.n_windows == 1 and r.n_tokens == ids.shape[1] - 1
    assert r.nll == pytest.approx(ref, rel=1e-5)
    assert r.perplexity == pytest.approx(math.exp(ref), rel=1e-5)


def test_strided_windows_equal_the_masked_label_recipe(tiny_lm):
    """Each window's new tokens scored with transformers' masked-label loss, summed by hand."""
    text = "".join(chr(97 + (i * 7) % 26) for i in range(150))
    ids = torch.tensor([list(text.encode())])
    window, stride = 40, 16
    nll_sum, count, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, ids.shape[1], stride):
            end = min(begin + window, ids.shape[1])
            chunk = ids[:, begin:end]
            labels = chunk.clone()
            labels[:, : -(end - prev_end)] = -100
            n_loss = int((labels[:, 1:] != -100).sum())
            nll_sum += tiny_lm(input_ids=chunk, labels=labels).loss.item() * n_loss
            count += n_loss
            prev_end = end
            if end == ids.shape[1]:
                break
    r = perplexity(tiny_lm, ByteTokenizer(), text=text, window=window, stride=stride, profile="paper")
    assert r.n_tokens == count == ids.shape[1] - 1
    assert r.nll == pytest.approx(nll_sum / count, rel=1e-5)
    assert r.n_windows > 1 and r.dataset == "text"


def test_profile_bounds_the_windows_and_reads_wikitext(tiny_lm, data_dir):
    smoke = perplexity(tiny_lm, ByteTokenizer(), data=data_dir, profile="smoke", window=64, stride=32)
    assert smoke.n_windows == 3 and smoke.dataset == "wikitext-2/test.txt"
    assert smoke.n_tokens == 64 + 2 * 32 - 1
    assert 1 < smoke.perplexity < 1e6


def test_bad_arguments(tiny_lm):
    with pytest.raises(TypeError, match="tokenizer"):
        perplexity(tiny_lm, text="abc")
    with pytest.raises(ValueError, match="context"):
        perplexity(tiny_lm, ByteTokenizer(), text="abc", window=4096, stride=512)
    with pytest.raises(ValueError, match="profile"):
        perplexity(tiny_lm, ByteTokenizer(), text="abc", profile="full")
