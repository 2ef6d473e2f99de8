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
from typing import Any, Callable

import torch

from trustray.benchmarks.base import PROFILES
from trustray.data import DataDir

TEST_FILE = "wikitext-2/test.txt"
WINDOW = 1024
STRIDE = 512
# Windows scored per profile (None = the whole test set).
# quick: 16 windows (8.7k scored tokens; 32 until the laptop sweep had to fit 15 minutes) still
# separates dense, 4- and 3-bit GPTQ by far more than the window-to-window noise.
MAX_WINDOWS: dict[str, int | None] = {"smoke": 3, "quick": 16, "paper": None}


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


def _token_ids(tok: Any, data: DataDir | None, text: str | None, max_windows: int | None,
               window: int, stride: int) -> tuple[torch.Tensor, str]:
    """Token ids of WikiText-2 test (a prefix long enough for ``max_windows``) or of ``text``."""
    dataset = TEST_FILE if text is None else "text"
    if text is None:
        text = (data or DataDir()).path(TEST_FILE).read_text(encoding="utf-8")
        if max_windows is not None:
            # Tokenise only a prefix: far more characters than the windows need (≥ 1 char/token).
            text = text[: 8 * (window + stride * max_windows)]
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if ids.numel() < 2:
        raise ValueError("need at least 2 tokens to compute perplexity")
    return ids, dataset


def _strided(
    ids: torch.Tensor, window: int, stride: int, max_windows: int | None, profile: str, dataset: str,
    window_nll: Callable[[list[int], int], float],
) -> PerplexityResult:
    """Sum ``window_nll(window_ids, n_context)`` — the NLL of ``window_ids[n_context:]`` — over the spans."""
    start = time.perf_counter()
    nll_sum, n_scored = 0.0, 0
    spans = window_spans(ids.numel(), window, stride, max_windows)
    for begin, end, first in spans:
        nll_sum += window_nll(ids[begin:end].tolist(), first - begin)
        n_scored += end - first
    nll = nll_sum / n_scored
    return PerplexityResult(
        perplexity=math.exp(nll), nll=nll, n_tokens=n_scored, n_windows=len(spans), window=window,
        stride=stride, profile=profile, dataset=dataset, seconds=time.perf_counter() - start,
    )


def _check_profile(profile: str) -> int | None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return MAX_WINDOWS[profile]


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
    max_windows = _check_profile(profile)
    model, tok = _unwrap(model_or_engine, tokenizer)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and window > context:
        raise ValueError(f"window {window} exceeds the model's context of {context} tokens")
    ids, dataset = _token_ids(tok, data, text, max_windows, window, stride)
    device = next(model.parameters()).device

    def window_nll(chunk_ids: list[int], n_context: int) -> float:
        chunk = torch.tensor([chunk_ids], device=device)
        # logits at position p predict token p + 1: only positions n_context - 1 … end - 2 are
        # scored, so the LM head runs on those (and the last) only.
        logits = model(input_ids=chunk, logits_to_keep=len(chunk_ids) - n_context + 1).logits[0].float()
        pred, target = logits[:-1], chunk[0, n_context:]
        return torch.nn.functional.cross_entropy(pred, target, reduction="sum").item()

    return _strided(ids, window, stride, max_windows, profile, dataset, window_nll)


@dataclass(frozen=True)
class OpenAIEndpoint:
    """An OpenAI-compatible server: its base URL, the model id to ask for, the bearer token
    (if it requires one) and the per-request timeout."""

    base_url: str
    model_id: str
    token: str | None = None
    timeout_s: float = 600.0


def perplexity_openai(
    endpoint: OpenAIEndpoint,
    tokenizer: Any,
    *,
    data: DataDir | None = None,
    profile: str = "quick",
    window: int = WINDOW,
    stride: int = STRIDE,
    text: str | None = None,
) -> PerplexityResult:
    """The same strided-window perplexity, scored by the OpenAI-compatible server at ``endpoint``
    that returns prompt log-probabilities (vLLM's ``prompt_logprobs`` on ``/v1/completions``).

    Each window is sent as token ids with ``max_tokens=1`` and ``prompt_logprobs=0``: vLLM
    then returns, for every prompt position, the log-probability of the token actually there
    (computed from the raw logits), which is what the transformers path scores.
    """
    import httpx

    max_windows = _check_profile(profile)
    ids, dataset = _token_ids(tokenizer, data, text, max_windows, window, stride)
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    url = endpoint.base_url.rstrip("/") + "/v1/completions"

    with httpx.Client(timeout=endpoint.timeout_s, headers=headers) as client:

        def window_nll(chunk_ids: list[int], n_context: int) -> float:
            body = {"model": endpoint.model_id, "prompt": chunk_ids, "max_tokens": 1, "temperature": 0.0,
                    "prompt_logprobs": 0}
            r = client.post(url, json=body)
            if r.status_code != 200:
                raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
            per_position = r.json()["choices"][0].get("prompt_logprobs")
            if not per_position or len(per_position) != len(chunk_ids):
                raise RuntimeError(f"{url} returned no prompt log-probabilities for a {len(chunk_ids)}-token "
                                   "window (the server must support prompt_logprobs, as vLLM does)")
            total = 0.0
            for pos in range(n_context, len(chunk_ids)):
                entry = per_position[pos][str(chunk_ids[pos])]
                total -= float(entry["logprob"])
            return total

        return _strided(ids, window, stride, max_windows, profile, dataset, window_nll)
