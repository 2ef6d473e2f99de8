"""Work budgets of the evaluation profiles, and the work a profile actually asks of the engine.

A profile's budget caps, per config, the prompt tokens sent to the engine (every request's
rendered prompt, counted with the model's tokenizer; a prompt is prefilled once for all its
samples) and the output tokens it may generate (``max_tokens`` × samples, an upper bound: most
answers stop early). Each perspective's item counts per component are chosen so that the sums
stay within the budget with every component of every score still defined; ``tests/test_budget.py``
checks the sums of every shipped profile against its budget.

``prefill_tokens`` is what is left of the prompt tokens after shared-prefix reuse (leading
128-token blocks an earlier prompt of the same perspective already computed, in item order),
the prefill work of an engine with ``prefix_reuse`` on.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trustray.paths import cache_dir


@dataclass(frozen=True)
class Budget:
    """Per-config token budget of a profile (sums over all perspectives)."""

    prompt_tokens: int
    output_tokens: int


# Sums per config with smollm2-135m's tokenizer (`trustray data stats --profile P`):
#   smoke 124k prompt / 2.4k output; quick 187k / 26k; paper 42.1M / 52.4M.
# quick is the laptop demo (`make sweep`); paper is the full protocol, unchanged: its budget
# records its size rather than shaping it.
BUDGETS: dict[str, Budget] = {
    "smoke": Budget(prompt_tokens=130_000, output_tokens=5_000),
    "quick": Budget(prompt_tokens=200_000, output_tokens=40_000),
    "paper": Budget(prompt_tokens=45_000_000, output_tokens=55_000_000),
}



@dataclass(frozen=True)
class PerspectiveWork:
    """What one perspective of a profile asks of the engine, per config."""

    perspective: str
    items: int
    generations: int
    prompt_tokens: int
    prefill_tokens: int  # prompt tokens left after shared-prefix reuse
    output_tokens: int  # max_tokens × samples, summed (an upper bound)


def tokenizer_for(model: str) -> Any:
    """The tokenizer of a model name, checkpoint directory or Hugging Face id."""
    from transformers import AutoTokenizer

    from trustray.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(model).path, clean_up_tokenization_spaces=False)


def perspective_work(name: str, data: Any, ctx: Any, tokenizer: Any) -> PerspectiveWork:
    """Count the items, samples and tokens of one perspective's rendered requests."""
    from trustray.benchmarks import BENCHMARKS
    from trustray.engines.hf import EngineOptions, prompt_ids
    from trustray.engines.prefix import block_bounds, block_keys

    bench = BENCHMARKS.get(name)
    items = bench.items(data, ctx)
    options = EngineOptions()  # the sweep engine's defaults
    seen: set[bytes] = set()
    gens = prompt = prefill = output = 0
    for item in items:
        req = bench.request(item, ctx)
        ids = prompt_ids(tokenizer, req)
        bounds = block_bounds(len(ids), options.prefix_block)
        keys = block_keys(ids, bounds)
        solo = options.prefills_alone(len(ids))  # the engine reuses prefixes of prompts prefilled alone
        reused = max((b for b, k in zip(bounds, keys) if k in seen), default=0) if solo else 0
        if solo:
            seen.update(keys)
        gens += req.sampling.n
        prompt += len(ids)
        prefill += len(ids) - reused
        output += req.sampling.n * req.sampling.max_tokens
    return PerspectiveWork(name, len(items), gens, prompt, prefill, output)


def profile_work(
    profile: str, data: Any, tokenizer: Any, perspectives: Sequence[str] | None = None, **ctx_fields: Any
) -> list[PerspectiveWork]:
    """Per-perspective work of ``profile`` as the evaluator renders it (MMLU trims its demos
    with the same tokenizer)."""
    from trustray.benchmarks.base import EvalContext
    from trustray.config import ALL_PERSPECTIVES

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    ctx = EvalContext(profile=profile, count_tokens=count, **ctx_fields)  # type: ignore[arg-type]
    return [perspective_work(p, data, ctx, tokenizer) for p in (perspectives or ALL_PERSPECTIVES)]


def over_budget(profile: str, work: Sequence[PerspectiveWork]) -> list[str]:
    """What of ``work`` exceeds ``profile``'s budget (empty when it fits)."""
    budget = BUDGETS[profile]
    out = []
    prompt = sum(w.prompt_tokens for w in work)
    output = sum(w.output_tokens for w in work)
    if prompt > budget.prompt_tokens:
        out.append(f"{profile}: {prompt} prompt tokens > budget {budget.prompt_tokens}")
    if output > budget.output_tokens:
        out.append(f"{profile}: {output} output tokens > budget {budget.output_tokens}")
    return out


@dataclass(frozen=True)
class EngineRates:
    """Measured HF engine throughput on this machine: prefill and batched decode tokens/s."""

    prefill_tok_s: float
    decode_tok_s: float
    dtype: str
    threads: int
    machine: str

    def seconds(self, work: PerspectiveWork) -> float:
        """Estimated engine seconds (prefill after reuse, every sample to ``max_tokens``)."""
        return work.prefill_tokens / self.prefill_tok_s + work.output_tokens / self.decode_tok_s


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_rates(model: str, log: Callable[[str], None] | None = None) -> EngineRates:
    """Time the HF engine on this machine (the sweep's batch width, default dtype, this process's
    torch threads): one 1024-token prefill, then a full decode batch of 32 sampled steps (its
    prompts' prefill taken out at the measured prefill rate). Under a minute on a laptop core."""
    import torch

    from trustray.engines.hf import EngineOptions, HFEngine
    from trustray.generation import GenerationRequest, SamplingParams

    engine = HFEngine(model, EngineOptions(batch_size=32, prefix_reuse=False))  # the sweep's batch width
    if log:
        log(f"measuring engine rates ({engine.dtype}, {torch.get_num_threads()} threads)")
    words = " ".join(f"w{i}" for i in range(4000))
    ids = engine.tokenizer(words, add_special_tokens=False)["input_ids"][:1024]
    engine._prefill_prompt(ids[:128])  # warm-up
    start = time.perf_counter()
    engine._prefill_prompt(ids)
    prefill = len(ids) / (time.perf_counter() - start)
    width = engine.width(engine._bucket(64))
    reqs = [
        GenerationRequest(request_id=f"r{i}", prompt=f"{i} " + words[: 200 + i], seed=i,
                          sampling=SamplingParams(temperature=1.0, max_tokens=32))
        for i in range(width)
    ]
    start = time.perf_counter()
    gens = engine.generate(reqs)
    seconds = time.perf_counter() - start - sum(g.prompt_tokens for g in gens) / prefill  # less their prefill
    decode = sum(sum(g.output_tokens) for g in gens) / max(1e-3, seconds)
    return EngineRates(prefill, decode, str(engine.dtype).removeprefix("torch."), torch.get_num_threads(), _machine())


def engine_rates(model: str, measure: bool = True, log: Callable[[str], None] | None = None) -> EngineRates | None:
    """This machine's rates for ``model``, measured once and kept in the cache."""
    import torch

    from trustray.engines.hf import EngineOptions
    from trustray.engines.kernels import DECODE_ATTENTION

    path = cache_dir() / "engine_rates.json"
    # rates measured by another engine layout or decode kernel (an older decode loop) are measured again
    key = f"{model}|{_machine()}|{torch.get_num_threads()}|b32{EngineOptions().layout()}|{DECODE_ATTENTION}"
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        stored = {}
    if key in stored:
        return EngineRates(**stored[key])
    if not measure:
        return None
    rates = measure_rates(model, log)
    stored[key] = asdict(rates)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(stored, indent=1))
    tmp.replace(path)
    return rates
