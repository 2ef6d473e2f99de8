"""The benchmark interface: items → request → parse → aggregate, pure functions on plain data.

A perspective module never imports Ray, torch or an engine. The evaluator calls, per item,
``request(item, ctx)``, sends it to a model, calls ``parse(item, text)`` on every generation,
fills ``Parsed.score`` from a toxicity scorer when ``Parsed.to_score`` is set, and finally
``aggregate(rows, ctx)`` over all rows of the perspective.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, get_args

from trustray.data import DataDir
from trustray.generation import GenerationRequest
from trustray.registry import Registry

Profile = Literal["smoke", "quick", "paper"]
RenderMode = Literal["chat_template", "dt_compat"]
# Which DecodingTrust scoring code to reproduce where the two differ (fairness, stereotype):
# the paper's fork (decoding-comp-trust/DecodingTrust) or upstream AI-secure/DecodingTrust.
DtReference = Literal["fork", "upstream"]
# What a perspective's score means for the report: a trust perspective is averaged into the trust
# score; a utility one (MMLU) is shown beside it.
Kind = Literal["trust", "utility"]
# What one row's outcome is: its ``correct`` flag, or its toxicity ``score`` (lower is better).
OutcomeSource = Literal["correct", "score"]
PROFILES: tuple[str, ...] = get_args(Profile)
KINDS: tuple[str, ...] = get_args(Kind)
OUTCOME_SOURCES: tuple[str, ...] = get_args(OutcomeSource)
RENDER_MODES: tuple[str, ...] = get_args(RenderMode)
DT_REFERENCES: tuple[str, ...] = get_args(DtReference)


@dataclass(frozen=True)
class EvalContext:
    """What shapes items and requests besides the data: profile, rendering, seeds."""

    profile: Profile = "smoke"
    render: RenderMode = "chat_template"
    dt_template: str = "llama-2"  # FastChat template reproduced by render="dt_compat"
    run_seed: int = 0
    dt_reference: DtReference = "fork"
    # Token budget for prompts that trim demos to fit (MMLU). ``count_tokens`` is supplied by
    # the caller (the model's tokenizer); without it a conservative chars/4 estimate is used.
    max_prompt_tokens: int = 2048
    count_tokens: Callable[[str], int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r} (known: {', '.join(PROFILES)})")
        if self.render not in RENDER_MODES:
            raise ValueError(f"unknown render mode {self.render!r} (known: {', '.join(RENDER_MODES)})")
        if self.dt_reference not in DT_REFERENCES:
            raise ValueError(
                f"unknown DecodingTrust reference {self.dt_reference!r} (known: {', '.join(DT_REFERENCES)})"
            )

    def tokens(self, text: str) -> int:
        return self.count_tokens(text) if self.count_tokens else len(text) // 4 + 1


@dataclass(frozen=True)
class Item:
    """One benchmark input. ``item_id`` is ``perspective/scenario/source-file/line``."""

    item_id: str
    perspective: str
    scenario: str  # the aggregation cell this item belongs to
    payload: Mapping[str, Any]  # what ``request`` needs (JSON-serialisable)
    gold: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)  # what ``aggregate`` needs (groups…)


@dataclass(frozen=True)
class Parsed:
    """One parsed generation.

    ``refused``: an explicit refusal (the perspective's refusal phrases or keywords matched).
    ``unparsed``: an answer with no valid label that is not an explicit refusal. The two never
    both hold. Each perspective's score and refusal rate count them as its source does.
    """

    label: str | None
    correct: bool | None = None
    refused: bool = False
    unparsed: bool = False
    score: float | None = None  # a continuous per-generation value, e.g. toxicity
    to_score: str | None = None  # text the evaluator must send to the toxicity scorer
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredRow:
    """What ``aggregate`` sees for one (item, generation)."""

    item: Item
    generation_index: int
    text: str
    parsed: Parsed


@dataclass
class PerspectiveScore:
    """A perspective's result: score, refusal rate and unparsed rate in 0–100, plus named
    components. The refusal rate is the source's own (which counts unparseable answers as
    refusals in some perspectives); the unparsed rate is the share of answers with no valid
    label that are not explicit refusals, weighted as the refusal rate is."""

    perspective: str
    score: float
    refusal_rate: float
    unparsed_rate: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # components that could not be computed
    notes: list[str] = field(default_factory=list)  # deviations from the source, data used…
    n_items: int = 0
    n_generations: int = 0


class Benchmark(Protocol):
    """A perspective (or MMLU). Implementations are plain objects registered by name.

    Besides the four functions, the object owns everything the rest of the project knows about
    the perspective: the config's defaults, the report's column order and labels, what a row's
    outcome means and the tests all read it from the registry.
    """

    name: str
    version: str  # of the item selection, parse and aggregate rules; part of each row's scorer version
    label: str  # the report's column label
    order: int  # the report's column order (the paper's table order), within its kind
    kind: Kind
    outcome: OutcomeSource
    aliases: tuple[str, ...]  # other names of the perspective in older results
    plans: Mapping[str, Any]  # per profile: how many items and tokens (the module's own shape)

    def items(self, data: DataDir, ctx: EvalContext) -> list[Item]: ...

    def request(self, item: Item, ctx: EvalContext) -> GenerationRequest: ...

    def parse(self, item: Item, text: str) -> Parsed: ...

    def aggregate(self, rows: Sequence[ScoredRow], ctx: EvalContext) -> PerspectiveScore: ...


class Described:
    """Defaults of a perspective's description (a trust perspective whose rows are right or wrong),
    and the prompts.json constants its ``request``/``parse`` read, which its items carry."""

    name: str
    kind: Kind = "trust"
    outcome: OutcomeSource = "correct"
    aliases: tuple[str, ...] = ()
    constant_names: tuple[str, ...] = ()

    def constants(self, data: DataDir) -> dict[str, Any]:
        """The perspective's ``constant_names`` read from ``data`` (put in every item's payload)."""
        return {n: data.constant(self.name, n) for n in self.constant_names}


BENCHMARKS: Registry[Benchmark] = Registry("perspective")


def register(bench: Benchmark) -> Benchmark:
    """Check ``bench``'s description and register it under its name (the one way to add a perspective)."""
    problems = []
    if bench.kind not in KINDS:
        problems.append(f"kind {bench.kind!r} (known: {', '.join(KINDS)})")
    if bench.outcome not in OUTCOME_SOURCES:
        problems.append(f"outcome {bench.outcome!r} (known: {', '.join(OUTCOME_SOURCES)})")
    missing = [p for p in PROFILES if p not in bench.plans]
    if missing:
        problems.append(f"no plan for profile(s) {', '.join(missing)}")
    if problems:
        raise ValueError(f"perspective {bench.name!r}: " + "; ".join(problems))
    BENCHMARKS.add(bench.name, bench)
    return bench


def perspectives(kind: Kind | None = None) -> list[Benchmark]:
    """The registered perspectives in the report's order: trust ones, then utility ones."""
    benches = [BENCHMARKS.get(n) for n in BENCHMARKS]
    if kind is not None:
        benches = [b for b in benches if b.kind == kind]
    return sorted(benches, key=lambda b: (KINDS.index(b.kind), b.order, b.name))


def find_perspective(name: str) -> Benchmark | None:
    """The registered perspective called ``name`` or one of its aliases (None when unknown)."""
    if name in BENCHMARKS:
        return BENCHMARKS.get(name)
    return next((b for b in perspectives() if name in b.aliases), None)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def stratified_subset(
    items: Sequence[V], key: Callable[[V], K], per_stratum: int | None, seed: int | str
) -> list[V]:
    """Up to ``per_stratum`` items from every stratum, drawn with a fixed seed.

    ``None`` keeps everything. The result keeps the input order, so item ids and shard
    boundaries are stable across runs and machines.
    """
    if per_stratum is None:
        return list(items)
    groups: dict[K, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[key(it)].append(i)
    keep: set[int] = set()
    for k in sorted(groups, key=repr):
        idx = groups[k]
        rng = random.Random(f"{seed}|{k!r}")
        keep.update(idx if len(idx) <= per_stratum else rng.sample(idx, per_stratum))
    return [it for i, it in enumerate(items) if i in keep]


def scorer_version(bench: Benchmark, ctx: EvalContext, toxicity: str | None = None) -> str:
    """The ``scorer_version`` of a result row: ``<perspective>/<version>;dt=<reference>``, plus
    ``;tox=<toxicity scorer version>`` where a toxicity scorer scored the row."""
    version = f"{bench.name}/{bench.version};dt={ctx.dt_reference}"
    return version if toxicity is None else f"{version};tox={toxicity}"


def dt_reference_of(version: str | None) -> str | None:
    """The DecodingTrust reference recorded in a row's ``scorer_version`` (None if absent)."""
    for part in (version or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key == "dt":
            return value
    return None


def item_seed(item: Item, ctx: EvalContext) -> int:
    """The request seed of an item: derived from its id and the run seed."""
    from trustray.generation import derive_seed

    return derive_seed(item.item_id, ctx.run_seed)
