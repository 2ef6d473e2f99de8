"""Shared-prefix reuse for ``HFEngine``: KV caches of earlier prompts, keyed by token blocks.

A long prompt is prefilled in blocks of ``block`` tokens starting at position 0 (the last,
partial or full, block carries the prompt's final token). After each block the cache holds
exactly the positions so far, contiguous, so the KV of a block depends only on the tokens up to
its end. The store keeps the caches of recent prompts and finds, for a new prompt, the longest
run of whole blocks an earlier prompt already computed: those positions are copied, and only
the rest is prefilled. Because a block is computed the same way whether its prefix was copied or
computed just before, a prompt's numbers never depend on which prompts came first.

MMLU 5-shot prompts of one subject, or few-shot prompts whose demonstrations repeat, share
their leading blocks and skip most of their prefill.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch


def block_bounds(n: int, block: int) -> list[int]:
    """Ends of the reusable blocks of an ``n``-token prompt, below ``n`` (the block holding the
    last token is always computed, for its logits): ``block``, then blocks as long as the
    prefix before them up to ``4 × block`` (128, 256, 512, 1024, 1536, ... for 128), so a long
    prompt runs in a few wide forward passes instead of many narrow ones."""
    bounds, end = [], block
    while end < n:
        bounds.append(end)
        end += min(end, 4 * block)
    return bounds


def block_keys(prompt: list[int], bounds: list[int]) -> list[bytes]:
    """A digest of ``prompt[:b]`` for each bound ``b`` (one pass over the tokens)."""
    h = hashlib.blake2b(digest_size=16)
    out, start = [], 0
    for b in bounds:
        h.update(torch.tensor(prompt[start:b], dtype=torch.int64).numpy().tobytes())
        out.append(h.copy().digest())
        start = b
    return out


@dataclass
class _Entry:
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (1, heads, positions, dim) keys/values
    nbytes: int
    keys: list[bytes]


class PrefixStore:
    """An LRU of prompt KV caches, bounded by bytes, looked up by whole-block token prefixes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._index: dict[bytes, tuple[int, int]] = {}  # block key -> (entry id, positions)
        self._bytes = 0
        self._next = 0
        self._lock = threading.Lock()
        self.hit_tokens = 0  # prompt positions copied instead of prefilled, since creation

    def lookup(self, keys: list[bytes], bounds: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The longest stored prefix among ``bounds`` (with their ``keys``): its length and views of
        its per-layer keys/values (stored tensors are never written to); ``(0, [])`` when none is stored."""
        with self._lock:
            for key, bound in zip(reversed(keys), reversed(bounds)):
                hit = self._index.get(key)
                if hit is None:
                    continue
                entry_id, positions = hit
                assert positions == bound
                self._entries.move_to_end(entry_id)
                layers = self._entries[entry_id].layers
                self.hit_tokens += bound
                return bound, [(k[:, :, :bound], v[:, :, :bound]) for k, v in layers]
        return 0, []

    def add(self, keys: list[bytes], bounds: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep a prompt's per-layer keys/values, reachable by each of its block ``keys``."""
        if not keys:
            return
        nbytes = sum(k.nbytes + v.nbytes for k, v in layers)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            while self._entries and self._bytes + nbytes > self.max_bytes:
                self._evict()
            entry_id, self._next = self._next, self._next + 1
            self._entries[entry_id] = _Entry(layers, nbytes, keys)
            self._bytes += nbytes
            for key, bound in zip(keys, bounds):
                self._index[key] = (entry_id, bound)  # the newest entry holding a prefix serves it

    def _evict(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self._bytes -= entry.nbytes
        for key in entry.keys:
            if self._index.get(key, (None,))[0] == entry_id:
                del self._index[key]

    def __len__(self) -> int:
        return len(self._entries)
