"""WikiText-2 test perplexity of a causal LM with strided (sliding) windows.

Each window of ``window`` tokens advances by ``stride``; only the tokens not scored by an
earlier window count, and each of them is conditioned on up to ``window − 1`` preceding
tokens (the transformers "perplexity of fixed-length models" recipe). The profile sets how
much of the test set is read: a few windows (smoke), a few dozen (quick) or all (paper).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from trustray.benchmarks.base import PROFILES
from trustray.data import DataDir

TEST_FILE = "wikitext-2/test.txt"
WINDOW = 1024
STRIDE = 512
# Windows scored per profile (None = the whole test set).
MAX_WINDOWS: dict[str, int | None] = {"smoke": 3, "quick": 32, "paper": None}


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity and what it was computed on."""

    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    n_tokens: int  # tokens scored
    n_windows: int
    window: int
    stride: int
    profile: str
    dataset: str = TEST_FILE
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unwrap(model_or_engine: Any, tokenizer: Any | None) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from a model + tokenizer or from an engine exposing both."""
    if tokenizer is None:
        model, tokenizer = getattr(model_or_engine, "model", None), getattr(
            model_or_engine, "tokenizer", None
        )
        if model is None or tokenizer is None:
            raise TypeError("pass a causal LM and its tokenizer, or an engine with .model and .tokenizer")
        return model, tokenizer
    return model_or_engine, tokenizer


def window_spans(
    n_tokens: int, window: int, stride: int, max_windows: int | None
) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of every window over ``n_tokens`` tokens.

    Position 0 is never scored (nothing precedes it); every later position is scored once.
    """
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    spans: list[tuple[int, int, int]] = []
    prev_end = 0
    for begin in range(0, max(n_tokens - 1, 1), stride):
        end = min(begin + window, n_tokens)
        spans.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens or (max_windows is not None and len(spans) >= max_windows):
            break
    return spans


@torch.inference_mode()
def perplexity(
    model_or_engine: Any,
    tokenizer: Any | None = None,
    *,
    data: DataDir | None = None,
    profile: str = "quick",
    window: int = WINDOW,
    stride: int = STRIDE,
    text: str | None = None,
) -> PerplexityResult:
    """Perplexity on WikiText-2 test (or on ``text``) with strided windows.

    ``model_or_engine`` is a transformers causal LM (with ``tokenizer``) or an engine that
    exposes ``.model`` and ``.tokenizer`` (``HFEngine``).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    model, tok = _unwrap(model_or_engine, tokenizer)
    max_windows = MAX_WINDOWS[profile]
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and window > context:
        raise ValueError(f"window {window} exceeds the model's context of {context} tokens")
    dataset = TEST_FILE if text is None else "text"
    if text is None:
        text = (data or DataDir()).path(TEST_FILE).read_text(encoding="utf-8")
        if max_windows is not None:
            # Tokenise only a prefix: far more characters than the windows need (≥ 1 char/token).
            text = text[: 8 * (window + stride * max_windows)]
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if ids.numel() < 2:
        raise ValueError("need at least 2 tokens to compute perplexity")
    device = next(model.parameters()).device
    start = time.perf_counter()
    nll_sum, n_scored = 0.0, 0
    spans = window_spans(ids.numel(), window, stride, max_windows)
    for begin, end, first in spans:
        chunk = ids[begin:end].unsqueeze(0).to(device)
        logits = model(input_ids=chunk).logits[0].float()
        # logits at position p predict token p + 1; score tokens first..end-1.
        pred = logits[first - begin - 1 : end - begin - 1]
        target = chunk[0, first - begin : end - begin]
        nll_sum += torch.nn.functional.cross_entropy(pred, target, reduction="sum").item()
        n_scored += target.numel()
    nll = nll_sum / n_scored
    return PerplexityResult(
        perplexity=math.exp(nll),
        nll=nll,
        n_tokens=n_scored,
        n_windows=len(spans),
        window=window,
        stride=stride,
        profile=profile,
        dataset=dataset,
        seconds=time.perf_counter() - start,
    )
