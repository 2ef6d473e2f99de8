"""``HFEngine``: a transformers engine that batches many requests itself.

Determinism by construction: a prompt's numbers depend only on the prompt, never on its
neighbours. (On CPU, bf16 kernels pick different blockings for different shapes: the same
prompt alone and in a batch of 4 gives logits that differ by up to ~0.6, which flips greedy
tokens.) A prompt falls into a length bucket ``L`` (a multiple of ``bucket`` tokens up to 256,
then steps of 1/8 of the power of two below it), and

- prefill: a prompt of a bucket of at least ``solo_prefill_tokens`` runs alone at its own
  length (long enough to keep the matmuls busy, and no filler rows); shorter prompts run
  ``prefill_width(L) = clamp(prefill_batch_tokens // L, 1, batch_size)`` distinct prompts at a
  time in one left-padded ``prefill_width(L)`` × ``L`` pass, filler rows included. A prompt is prefilled once however many samples it asks for;
- decode: a row decodes in a cache of ``C = decode_capacity(L, max_tokens)`` positions
  (``L + max_tokens`` rounded up, so nearby buckets and budgets share one), its prompt ending at
  ``C - max_tokens`` (masked zeros in front) and its token ``t`` just after. The rows of one ``C``
  share ``width(C) = clamp(max_batch_tokens // C, 1, batch_size)`` slots; a slot whose row
  finishes takes the next row at once (continuous batching), so passes do not carry finished
  rows. Every pass has the same shape and attends over all ``C`` positions, so a row's numbers
  do not depend on its slot, its neighbours or when it started. Attention skips idle slots
  (SDPA computes each row on its own, so a busy row's numbers are the same either way).

- prefix reuse (``prefix_reuse``, on by default): a prompt prefilled alone runs in
  blocks from position 0 (``prefix_block`` tokens, then as long as the prefix before them up to
  four blocks), and the leading blocks an earlier prompt already
  computed are copied from an LRU store instead (``trustray.engines.prefix``).

Every shape depends only on the prompt itself. Sampling draws every sample from its own
generator seeded by ``sample_seed(request.seed, i)``. Models whose cache rows cannot be
stacked (sliding-window or hybrid layers) prefill each decode batch together instead.

``deterministic=False`` drops the filler rows (faster for small, ragged workloads), at the
price of greedy outputs that may depend on batch composition in bf16.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trustray.engines.base import DType, ProgressCallback
from trustray.engines.kernels import (
    ATTENTION, DECODE_ATTENTION, KVArena, SlotCache, busy_ranges, preallocated_cache, use_gqa_attention,
)
from trustray.engines.prefix import PrefixStore, block_bounds, block_keys
from trustray.generation import Generation, GenerationRequest, SamplingParams, sample_seed
from trustray.models import ModelError, ResolvedModel, resolve_model


@dataclass(frozen=True)
class EngineOptions:
    """How ``HFEngine`` loads and batches. ``batch_size`` rows per forward pass, fixed."""

    dtype: DType = "auto"
    batch_size: int = 64
    bucket: int = 32
    deterministic: bool = True
    device: str = "auto"
    max_batch_tokens: int = 32768  # cache positions per decode pass (bounds memory and attention cost)
    # Prompt tokens per padded prefill pass: a short bucket ``L`` is prefilled
    # ``prefill_batch_tokens // L`` prompts at a time (filler rows included), so a bucket holding
    # a few prompts pays for a few hundred filler tokens, not for ``batch_size`` rows.
    prefill_batch_tokens: int = 1024
    # Prompts whose bucket is at least this long are prefilled alone, unpadded (a lone prompt
    # that long keeps the matmuls busy, and filler rows would cost whole prompts); shorter ones
    # are prefilled ``width`` prompts at a time in one fixed-shape padded pass.
    solo_prefill_tokens: int = 256
    # Shared-prefix reuse for prompts prefilled alone: they are prefilled in blocks of
    # ``prefix_block`` tokens, and leading blocks an earlier prompt computed (kept in an LRU of
    # ``prefix_cache_mb``) are copied instead (``trustray.engines.prefix``).
    prefix_reuse: bool = True
    prefix_block: int = 128
    prefix_cache_mb: int = 512

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.bucket < 1:
            raise ValueError(f"bucket must be >= 1, got {self.bucket}")
        if self.prefill_batch_tokens < 1:
            raise ValueError(f"prefill_batch_tokens must be >= 1, got {self.prefill_batch_tokens}")
        if self.solo_prefill_tokens < 1:
            raise ValueError(f"solo_prefill_tokens must be >= 1, got {self.solo_prefill_tokens}")
        if self.prefix_block < 1:
            raise ValueError(f"prefix_block must be >= 1, got {self.prefix_block}")

    def bucket_length(self, n: int) -> int:
        """The padded length of an ``n``-token prompt's bucket (multiples of ``bucket`` up to 256,
        then steps of 1/8 of the power of two below ``n``)."""
        step = self.bucket
        if n > 256:
            step = max(step, 2 ** (n.bit_length() - 1) // 8)
        return max(step, math.ceil(n / step) * step)

    def decode_capacity(self, length: int, max_tokens: int) -> int:
        """The decode cache length of a prompt of bucket ``length`` asking ``max_tokens``:
        ``length + max_tokens`` rounded up to a multiple of 64, or of half the power of two below
        it when longer, so rows of nearby buckets and budgets share one cache."""
        need = length + max_tokens
        step = max(64, 2 ** (need.bit_length() - 1) // 2)
        return math.ceil(need / step) * step

    def layout(self) -> str:
        """The batching layout's part of the engine version (what changes bf16 numbers)."""
        return f"/prefill-solo{self.solo_prefill_tokens}-p{self.prefill_batch_tokens}/slots-d{self.max_batch_tokens}"

    def prefills_alone(self, n: int) -> bool:
        """Whether an ``n``-token prompt is prefilled alone (the path that reuses shared prefixes)."""
        return self.bucket_length(n) >= self.solo_prefill_tokens


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


def pick_dtype(dtype: DType, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def load_causal_lm(path: Path, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """Load a checkpoint for inference; compressed checkpoints are loaded as dense weights."""
    from transformers import AutoModelForCausalLM

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"unreadable checkpoint {path}: {e}") from e
    try:
        if config.get("quantization_config") and device.type == "cpu":
            from trustray.compress import load_dense

            model = load_dense(path, dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"cannot load checkpoint {path}: {e}") from e
    return model.to(device).eval()


def render_prompt(tokenizer, request: GenerationRequest) -> str:
    """The exact text a model with ``tokenizer`` sees for ``request`` (chat template for messages)."""
    if request.prompt is not None:
        return request.prompt
    messages = [{"role": m.role, "content": m.content} for m in request.messages or ()]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, request: GenerationRequest) -> list[int]:
    """The prompt token ids ``HFEngine`` prefills for ``request``."""
    return tokenizer(render_prompt(tokenizer, request), add_special_tokens=request.prompt is not None)["input_ids"]


@dataclass
class _Row:
    """One sample to generate: request ``req`` sample ``index``."""

    req: int
    index: int
    ids: list[int]
    sampling: SamplingParams
    seed: int
    bucket: int  # the prompt's length bucket
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None  # "stop" | "length" once done
    text: str = ""


@dataclass
class _Prefill:
    """A prefill pass: fp32 logits at each row's last prompt position, and its KV cache."""

    logits: torch.Tensor  # (rows, vocab)
    cache: object


@dataclass(frozen=True)
class _Source:
    """Where a prompt's prefill lives: row ``row`` of ``prefill``."""

    prefill: _Prefill
    row: int


class HFEngine:
    """Generates with a transformers causal LM, batching and bucketing requests itself."""

    name = "hf"

    def __init__(self, model: str | Path | ResolvedModel, options: EngineOptions | None = None) -> None:
        from transformers import AutoTokenizer
        import transformers

        self.options = options or EngineOptions()
        self.resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
        dev = self.options.device
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev)
        self.dtype = pick_dtype(self.options.dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path, clean_up_tokenization_spaces=False)
        self.model = load_causal_lm(self.resolved.path, self.dtype, self.device)
        use_gqa_attention(self.model)
        # prefilled KV rows can be stacked into decode batches only when every layer is full attention
        self._stackable = self._cache_kind() == "preallocated"
        self._reuse = self.options.prefix_reuse and self._stackable
        self.prefix_store = PrefixStore(self.options.prefix_cache_mb << 20)
        self._kv_arena = KVArena()  # decode caches reuse one block of memory
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.eos_ids = self._eos_ids()
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 4096))
        self.version = (
            f"transformers-{transformers.__version__}/torch-{torch.__version__}/"
            f"{str(self.dtype).removeprefix('torch.')}/{self._attention_version()}/"
            f"b{self.options.batch_size}"
            f"{'' if self.options.deterministic else '-nondet'}"
            f"{self.options.layout() if self._stackable else '/prefill-padded'}"
            f"{f'/prefix{self.options.prefix_block}x4' if self._reuse else ''}"
        )

    def _attention_version(self) -> str:
        attention = self.model.config._attn_implementation
        return f"{attention}+{DECODE_ATTENTION}" if attention == ATTENTION else attention

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return ids

    # -- prompts -----------------------------------------------------------------------------

    def render(self, request: GenerationRequest) -> str:
        """The exact text the model sees for a request."""
        return render_prompt(self.tokenizer, request)

    def encode(self, request: GenerationRequest) -> list[int]:
        """Token ids of a request's prompt (a raw prompt gets the tokenizer's special tokens)."""
        ids = prompt_ids(self.tokenizer, request)
        if len(ids) + request.sampling.max_tokens > self.context_length:
            raise ValueError(
                f"request {request.request_id!r}: prompt of {len(ids)} tokens + max_tokens "
                f"{request.sampling.max_tokens} exceeds the model's context of {self.context_length}"
            )
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation --------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]:
        """Complete every request ``n`` times; results come back in request order."""
        start = time.perf_counter()
        encoded = [self.encode(r) for r in requests]  # tokenised once
        rows = [
            _Row(req=i, index=j, ids=ids, sampling=r.sampling, seed=sample_seed(r.seed, j),
                 bucket=self._bucket(len(ids)))
            for i, (r, ids) in enumerate(zip(requests, encoded, strict=True))
            for j in range(r.sampling.n)
        ]
        # With stackable caches, rows whose prompt bucket + max_tokens round to one cache length
        # decode together in its slots; otherwise rows of one bucket and max_tokens decode in
        # fixed-width batches. Either way a prompt is prefilled once for all its samples.
        groups: dict[tuple[int, ...], list[_Row]] = defaultdict(list)
        for row in rows:
            shape = (row.bucket, row.sampling.max_tokens)
            groups[(self.options.decode_capacity(*shape),) if self._stackable else shape].append(row)
        done_requests = 0
        remaining = [r.sampling.n for r in requests]

        def finished(done_rows: list[_Row], new_tokens: int) -> None:
            nonlocal done_requests
            for row in done_rows:
                remaining[row.req] -= 1
                done_requests += remaining[row.req] == 0
            if progress:
                progress(new_tokens, done_requests)

        for (length, *_), members in sorted(groups.items()):
            if self._stackable:  # ``length`` is the decode cache's
                # stable: a request's rows stay contiguous
                members.sort(key=lambda r: (r.bucket, r.sampling.max_tokens))
                self._decode_slots(members, length, finished)
                continue
            width = self.width(length)
            for k in range(0, len(members), width):
                chunk = members[k : k + width]
                finished(chunk, self._run_batch(chunk, length))
        elapsed = time.perf_counter() - start
        by_req: dict[int, list[_Row]] = defaultdict(list)
        for row in rows:
            by_req[row.req].append(row)
        return [
            Generation(
                request_id=r.request_id,
                texts=tuple(row.text for row in by_req[i]),
                prompt_tokens=len(encoded[i]),
                output_tokens=tuple(len(row.tokens) for row in by_req[i]),
                finish_reasons=tuple(row.finish or "length" for row in by_req[i]),
                latency_s=elapsed,
            )
            for i, r in enumerate(requests)
        ]

    def _bucket(self, n: int) -> int:
        return self.options.bucket_length(n)

    def width(self, length: int) -> int:
        """Rows per decode pass over a cache of ``length`` positions."""
        return max(1, min(self.options.batch_size, self.options.max_batch_tokens // length))

    def prefill_width(self, length: int) -> int:
        """Prompts per padded prefill pass over bucket ``length``."""
        return max(1, min(self.options.batch_size, self.options.prefill_batch_tokens // length))

    def _prefill_next(self, members: list[_Row], start: int, sources: dict[int, _Source]) -> _Source:
        """The prefill of ``members[start]``'s prompt, computed now if not yet in ``sources``.

        A prompt of a long bucket is prefilled alone; one of a short bucket ``L`` together with
        the next prompts of bucket ``L`` after it not yet prefilled, ``width(L)`` of them in one
        fixed-shape padded pass (``members`` are sorted by bucket). Either way a prompt's numbers
        depend only on the prompt and its bucket, never on its neighbours.
        """
        first = members[start]
        if first.req in sources:
            return sources[first.req]
        length = first.bucket
        if length >= self.options.solo_prefill_tokens:
            sources[first.req] = _Source(self._prefill_prompt(first.ids), 0)
            return sources[first.req]
        width = self.prefill_width(length)
        batch: dict[int, list[int]] = {}
        for row in members[start:]:  # the next ``width`` distinct prompts of this bucket, the needed first
            if row.bucket != length or (len(batch) == width and row.req not in batch):
                break
            if row.req not in sources:
                batch[row.req] = row.ids
        rows = width if self.options.deterministic else len(batch)
        prefill = _Prefill(*self._prefill_padded(list(batch.values()), length, rows, 0))
        for i, req in enumerate(batch):
            sources[req] = _Source(prefill, i)
        return sources[first.req]

    def _rows_tensor(self, prompts: list[list[int]], length: int, width: int, extra: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids (width × length) and a mask over the prompt plus ``extra`` positions."""
        ids = torch.full((width, length), self.pad_id, dtype=torch.long)
        mask = torch.ones((width, length + extra), dtype=torch.long)
        mask[:, :length] = 0
        for i in range(width):
            src = prompts[i] if i < len(prompts) else prompts[0]  # filler rows repeat row 0
            ids[i, length - len(src) :] = torch.tensor(src)
            mask[i, length - len(src) : length] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.inference_mode()
    def _prefill_prompt(self, prompt: list[int]) -> _Prefill:
        """One prompt alone, unpadded: its last-position logits and its KV cache. The shapes are
        the prompt's own, so the numbers depend on nothing but the prompt. With prefix reuse the
        prompt runs in blocks, and its leading blocks come from the prefix store when an earlier
        prompt computed them."""
        if self._reuse and len(prompt) > self.options.prefix_block:
            return self._prefill_blocks(prompt)
        ids = torch.tensor([prompt], device=self.device)
        cache = preallocated_cache(self.model.config.num_hidden_layers, len(prompt))
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        # fp32 is exact for bf16/fp16 logits, and argmax runs faster on it
        return _Prefill(out.logits[:, -1, :].float(), cache)

    def _prefill_blocks(self, prompt: list[int]) -> _Prefill:
        """Block-wise prefill: positions ``[0, b)`` copied from the store for the longest stored
        block prefix ``b``, then each remaining block on a cache of exactly the positions so far
        (contiguous, so a block's numbers are the same whether its prefix was copied or computed)."""
        from transformers import DynamicCache

        bounds = block_bounds(len(prompt), self.options.prefix_block)
        keys = block_keys(prompt, bounds)
        start, layers = self.prefix_store.lookup(keys, bounds)
        cache = DynamicCache(config=self.model.config)
        for i, (k, v) in enumerate(layers):
            cache.update(k, v, i)
        ids = torch.tensor([prompt], device=self.device)
        for end in [b for b in bounds if b > start] + [len(prompt)]:
            out = self.model(input_ids=ids[:, start:end], past_key_values=cache, use_cache=True, logits_to_keep=1)
            start = end
        self.prefix_store.add(keys, bounds, [(layer.keys, layer.values) for layer in cache.layers])
        return _Prefill(out.logits[:, -1, :].float(), cache)

    @torch.inference_mode()
    def _prefill_padded(self, prompts: list[list[int]], length: int, width: int, steps: int) -> tuple[torch.Tensor, object]:
        """The fallback: one fixed-shape (width × length) forward pass over left-padded prompts."""
        ids, mask = self._rows_tensor(prompts, length, width, 0)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._cache(length + steps)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )
        return out.logits[:, -1, :].float(), cache

    @torch.inference_mode()
    def _decode_slots(
        self, members: list[_Row], capacity: int, finished: Callable[[list[_Row], int], None]
    ) -> None:
        """Decode rows in ``width(capacity)`` slots of one fixed-shape cache of ``capacity``
        positions: a row's prompt ends at ``capacity - max_tokens`` and its token ``t`` sits just
        after. A slot whose row finishes takes the next row at once (its prefilled KV copied in),
        so no pass carries finished rows. Every pass has the same shape and a row sits at the same
        positions whichever slot it gets, so its numbers depend on nothing but itself."""
        width = self.width(capacity)
        sources: dict[int, _Source] = {}
        slots: list[_Row | None] = [None] * width
        step = [0] * width
        end = [0] * width  # where a slot's prompt ends
        logits: torch.Tensor | None = None
        cache: SlotCache | None = None
        generators: list[torch.Generator | None] = [None] * width
        next_ids = torch.full((width,), self.pad_id, dtype=torch.long)
        waiting = 0  # index of the next row to load into a free slot
        produced = 0  # tokens not yet reported
        while True:
            for s in range(width):  # refill free slots, in row order
                if slots[s] is not None or waiting == len(members):
                    continue
                row = members[waiting]
                src = self._prefill_next(members, waiting, sources)
                if cache is None:
                    cache = SlotCache(src.prefill.cache, width, capacity, self._kv_arena)
                    logits = src.prefill.logits.new_zeros((width, src.prefill.logits.shape[-1]))
                end[s] = capacity - row.sampling.max_tokens
                cache.load(s, src.prefill.cache, src.row, end[s])
                logits[s] = src.prefill.logits[src.row]
                slots[s], step[s] = row, 0
                generators[s] = (None if row.sampling.greedy
                                 else torch.Generator(device="cpu").manual_seed(row.seed))
                waiting += 1
                # a request's rows are contiguous: its prefill is no longer needed after its last row
                if waiting == len(members) or members[waiting].req != row.req:
                    sources.pop(row.req, None)
            if all(row is None for row in slots):
                return
            done: list[_Row] = []
            for s, token in self._next_tokens(logits, slots, generators).items():
                row = slots[s]
                next_ids[s] = token
                produced += 1
                self._advance(row, token)
                if row.finish is not None:
                    self._finish(row)
                    done.append(row)
                    slots[s] = None
            if done:
                finished(done, produced)
                produced = 0
            if all(row is None for row in slots):
                continue  # nothing to decode this pass: refill first
            mask = torch.zeros((width, 1, 1, capacity), dtype=torch.bool)
            at = [0] * width  # where each slot writes this pass's token
            positions = torch.zeros((width, 1), dtype=torch.long)
            for s, row in enumerate(slots):
                if row is None:  # an idle slot decodes a pad token that attends only to itself
                    next_ids[s], step[s] = self.pad_id, 0
                    mask[s, 0, 0, 0] = True
                    continue
                at[s] = end[s] + step[s]
                mask[s, 0, 0, end[s] - len(row.ids) : at[s] + 1] = True
                positions[s, 0] = len(row.ids) + step[s]
            cache.positions = torch.tensor(at, device=self.device)
            out = self.model(
                input_ids=next_ids[:, None].to(self.device), attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device), past_key_values=cache, use_cache=True,
                **self._busy_kwargs(slots),
            )
            logits = out.logits[:, -1, :].float()
            for s, row in enumerate(slots):
                step[s] += row is not None

    @torch.inference_mode()
    def _run_batch(self, rows: list[_Row], length: int) -> int:
        """Models whose cache rows cannot be stacked: prefill one same-shape batch together and
        generate every row to completion; returns tokens generated."""
        width = self.width(length) if self.options.deterministic else len(rows)
        steps = max(row.sampling.max_tokens for row in rows)
        _, full_mask = self._rows_tensor([row.ids for row in rows], length, width, steps)
        logits, cache = self._prefill_padded([row.ids for row in rows], length, width, steps)
        positions = torch.tensor([len(row.ids) for row in rows] + [len(rows[0].ids)] * (width - len(rows)),
                                 device=self.device)[:, None]
        generators = [
            torch.Generator(device="cpu").manual_seed(row.seed) if not row.sampling.greedy else None
            for row in rows
        ]
        produced = 0
        next_ids = torch.full((width,), self.pad_id, dtype=torch.long)
        for step in range(steps):
            for i, token in self._next_tokens(logits, rows, generators).items():
                next_ids[i] = token
                produced += 1
                self._advance(rows[i], token)
            if all(row.finish is not None for row in rows):
                break
            out = self.model(
                input_ids=next_ids[:, None].to(self.device), attention_mask=full_mask[:, : length + step + 1],
                position_ids=positions + step, past_key_values=cache, use_cache=True,
            )
            logits = out.logits[:, -1, :].float()
        for row in rows:
            self._finish(row)
        return produced

    def _busy_kwargs(self, slots: Sequence[_Row | None]) -> dict[str, object]:
        """Model kwargs that restrict decode attention to the busy slots (``sdpa_gqa`` only)."""
        if self.model.config._attn_implementation != ATTENTION:
            return {}
        return {"busy_slots": busy_ranges([row is not None for row in slots])}

    def _cache_kind(self) -> str:
        config = self.model.config
        layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
        if layer_types == {"full_attention"} and getattr(config, "sliding_window", None) is None:
            return "preallocated"
        return "dynamic"

    def _cache(self, capacity: int):
        """A KV cache for one batch: preallocated when every layer is full attention."""
        from transformers import DynamicCache

        if self._stackable:
            return preallocated_cache(self.model.config.num_hidden_layers, capacity)
        return DynamicCache(config=self.model.config)

    def _next_tokens(
        self, logits: torch.Tensor, rows: Sequence[_Row | None], generators: Sequence[torch.Generator | None]
    ) -> dict[int, int]:
        """The next token of every unfinished row (index → token): one vectorised argmax for the
        greedy rows, a seeded draw from the logits on CPU for each sampled one."""
        live = [i for i, row in enumerate(rows) if row is not None and row.finish is None]
        greedy = logits.argmax(-1).tolist() if any(generators[i] is None for i in live) else None
        sampled = logits.cpu() if any(generators[i] is not None for i in live) else None
        return {
            i: greedy[i] if generators[i] is None else self._select(sampled[i], rows[i].sampling, generators[i])
            for i in live
        }

    @staticmethod
    def _select(logits: torch.Tensor, sp: SamplingParams, gen: torch.Generator) -> int:
        """Next token of a sampling row: a seeded draw after temperature, top-k and top-p."""
        logits = logits / sp.temperature
        if 0 < sp.top_k < logits.numel():
            vals, idx = torch.topk(logits, sp.top_k)
        else:
            vals, idx = torch.sort(logits, descending=True)
        probs = torch.softmax(vals, dim=-1)
        if sp.top_p < 1.0:
            cum = probs.cumsum(-1)
            keep = (cum - probs) < sp.top_p  # always keeps the most likely token
            probs = probs * keep
            probs = probs / probs.sum()
        choice = torch.multinomial(probs, 1, generator=gen)
        return int(idx[choice])

    def _advance(self, row: _Row, token: int) -> None:
        if token in self.eos_ids:
            row.finish = "stop"
            return
        row.tokens.append(token)
        if row.sampling.stop:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            if any(s in text for s in row.sampling.stop):
                row.finish = "stop"
                return
        if len(row.tokens) >= row.sampling.max_tokens:
            row.finish = "length"

    def _finish(self, row: _Row) -> None:
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        if row.sampling.stop:
            cut = min((text.find(s) for s in row.sampling.stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
                row.finish = "stop"
        row.text = text
