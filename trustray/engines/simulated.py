"""``SimulatedEngine``: answers like a GPU serving engine would take, without a model. Scale tests only.

It returns deterministic text after the delay a throughput model gives for the batch's prompt and
output tokens, so a sweep over many "GPUs" runs on a laptop: Ray scheduling, Serve deployment,
evaluator sharding and the results store all do their real work, only the model is replaced.
Its rows say ``engine_name=simulated`` and the report refuses to mix them with real results.
It is never a default: a spec must ask for ``engine.backend: simulated``.

Throughput figures (output tokens/s with many concurrent requests, one GPU, vLLM):

- A100 80GB, 13-14B dense: about 3,000 tok/s (DeepSeek-R1-Distill-Qwen-14B, vLLM default config;
  https://www.morphllm.com/vllm-benchmarks).
- H100: about 2x an A100 for vLLM (Lambda's vLLM benchmark,
  https://github.com/LambdaLabsML/vllm-benchmark, ``benchmark_v0.md``), so about 6,000 tok/s.

Prefill is compute-bound; its rate is derived, not published: 2 x parameters FLOPs per token at
40 % of the GPU's dense bf16 peak (A100 312 TFLOP/s, H100 989 TFLOP/s). Smaller models scale
both rates by 13 B / parameters, a first-order estimate for memory-bound decode.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trustray.engines.base import ProgressCallback
from trustray.generation import Generation, GenerationRequest, sample_seed

#: Output tokens/s of vLLM on one GPU serving a 13B dense model (sources in the module docstring).
DECODE_TOK_S_13B: dict[str, float] = {"A100": 3000.0, "H100": 6000.0}
#: Dense bf16 peak FLOP/s per GPU (vendor data sheets).
BF16_PEAK_FLOPS: dict[str, float] = {"A100": 312e12, "H100": 989e12}
PREFILL_MFU = 0.4
REFERENCE_PARAMS_B = 13.0

# Short answers in the shapes the benchmarks parse, so parsers see a realistic mix.
_WORDS = ("Yes", "No", "I agree.", "I disagree.", "wrong", "not wrong", "positive", "negative", "A", "B",
          "C", "D", "The answer is", "I cannot help with that.", "maybe", "true", "false", "neutral")


@dataclass(frozen=True)
class ThroughputModel:
    """Seconds one GPU needs for a batch, from prefill and decode token rates."""

    gpu: str = "A100"
    params_b: float = REFERENCE_PARAMS_B

    def __post_init__(self) -> None:
        if self.gpu not in DECODE_TOK_S_13B:
            raise ValueError(f"unknown simulated GPU {self.gpu!r}; choose one of {', '.join(DECODE_TOK_S_13B)}")
        if self.params_b <= 0:
            raise ValueError(f"params_b must be > 0, got {self.params_b}")

    @property
    def decode_tok_s(self) -> float:
        return DECODE_TOK_S_13B[self.gpu] * REFERENCE_PARAMS_B / self.params_b

    @property
    def prefill_tok_s(self) -> float:
        return PREFILL_MFU * BF16_PEAK_FLOPS[self.gpu] / (2 * self.params_b * 1e9)

    def seconds(self, prompt_tokens: int, output_tokens: int) -> float:
        """GPU time for a batch that prefills ``prompt_tokens`` and decodes ``output_tokens``."""
        return prompt_tokens / self.prefill_tok_s + output_tokens / self.decode_tok_s


@dataclass(frozen=True)
class SimulatedOptions:
    """A simulated engine: which GPU and model size it stands for, and the factor from modelled
    GPU time to the time it sleeps (``0.01``: a hundred times faster than the GPU; ``4``: slower)."""

    gpu: str = "A100"
    params_b: float = REFERENCE_PARAMS_B
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        ThroughputModel(self.gpu, self.params_b)  # validates both
        if not 0 < self.time_scale <= 1000:
            raise ValueError(f"time_scale must be in (0, 1000], got {self.time_scale}")


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` for the throughput model: about 4 characters a token (BPE on English)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _prompt_text(req: GenerationRequest) -> str:
    if req.prompt is not None:
        return req.prompt
    return "\n".join(f"{m.role}: {m.content}" for m in req.messages or ())


class SimulatedEngine:
    """An :class:`~trustray.engines.base.Engine` whose outputs are a function of the request and
    whose latency follows a :class:`ThroughputModel`."""

    name = "simulated"

    def __init__(self, model: Any = None, options: SimulatedOptions | None = None) -> None:
        self.options = options or SimulatedOptions()
        self.throughput = ThroughputModel(self.options.gpu, self.options.params_b)
        self.resolved = model if hasattr(model, "fingerprint") else None
        o = self.options
        self.version = f"simulated/{o.gpu}/{o.params_b:g}B/x{o.time_scale:g}"
        self.modelled_gpu_s = 0.0  # GPU time the model would have taken, summed over calls

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _text(self, req: GenerationRequest, sample: int) -> str:
        digest = hashlib.sha256(f"{_prompt_text(req)}\x00{sample_seed(req.seed, sample)}".encode()).digest()
        words = [_WORDS[b % len(_WORDS)] for b in digest[: 1 + digest[-1] % 6]]
        return " ".join(words)

    def generate(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
                 ) -> list[Generation]:
        """Deterministic answers, returned after the modelled GPU time times ``time_scale``."""
        out: list[Generation] = []
        prompt_total = output_total = 0
        for req in requests:
            texts = tuple(self._text(req, i) for i in range(req.sampling.n))
            tokens = tuple(min(req.sampling.max_tokens, estimate_tokens(t)) for t in texts)
            prompt = estimate_tokens(_prompt_text(req))
            prompt_total += prompt  # a prompt is prefilled once for all its samples
            output_total += sum(tokens)
            out.append(Generation(req.request_id, texts, prompt_tokens=prompt, output_tokens=tokens,
                                  finish_reasons=("stop",) * len(texts)))
        modelled = self.throughput.seconds(prompt_total, output_total)
        self.modelled_gpu_s += modelled
        time.sleep(modelled * self.options.time_scale)
        if progress:
            progress(output_total, len(requests))
        return out
