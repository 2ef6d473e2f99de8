"""Useful model FLOPs of a workload and the measured matmul peak, for a model-FLOP utilisation.

Useful FLOPs count what the model must compute for the tokens, never padding or filler rows:
2 × (the layers' matmul parameters) per prompt or generated token, the LM head (2 × vocab ×
hidden) once per prompt (only the last position's logits are needed) and once per generated
token, and causal attention (QKᵀ and AV: 4 × layers × heads × head_dim per query per visible
key position).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    head_dim: int
    vocab: int
    layer_params: int  # matmul weights of the decoder layers (no embeddings, no norms)

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        """The shape of a transformers causal LM."""
        cfg = model.config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        layer_params = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
        return cls(cfg.num_hidden_layers, cfg.hidden_size, heads, head_dim, cfg.vocab_size, layer_params)

    def attention(self, queries_from: int, queries_to: int) -> float:
        """Attention FLOPs of query positions ``[queries_from, queries_to)`` (each sees itself and
        every position before it)."""
        # sum of (t + 1) for t in [a, b)
        keys = (queries_to * (queries_to + 1) - queries_from * (queries_from + 1)) / 2
        return 4.0 * self.layers * self.heads * self.head_dim * keys

    def request_flops(self, prompt_tokens: int, output_tokens: Sequence[int]) -> float:
        """Useful FLOPs of one prompt, prefilled once, and its samples' generated tokens."""
        out = 2.0 * self.layer_params * prompt_tokens + 2.0 * self.vocab * self.hidden + self.attention(0, prompt_tokens)
        for n in output_tokens:
            out += (2.0 * self.layer_params + 2.0 * self.vocab * self.hidden) * n
            out += self.attention(prompt_tokens, prompt_tokens + n)
        return out


def matmul_peak(dtype: Any, threads: int, n: int = 2048, seconds: float = 3.0) -> float:
    """Measured FLOP/s of square ``n`` × ``n`` torch matmuls at ``dtype`` on ``threads`` threads
    (best of repeated timings over about ``seconds``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # warm-up
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - start))
        return best
    finally:
        torch.set_num_threads(before)
