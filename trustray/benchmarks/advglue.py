"""Adversarial robustness: AdvGLUE++ when its files are present, else the AdvGLUE dev set.

Cells are (source, task); a source is one AdvGLUE++ file (alpaca, vicuna, stable-vicuna) or
``advglue-dev``. Messages: the few-shot demo turns, then ``TASK2SHORTPROMPT[task] + "\\n" + input``,
no system prompt. score = 100 · mean over cells of accuracy (an unparsed answer, −1, is wrong).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from trustray.benchmarks import _dt
from trustray.benchmarks.base import (
    Described,
    EvalContext,
    Item,
    Parsed,
    PerspectiveScore,
    ScoredRow,
    register,
    stratified_subset,
)
from trustray.data import DataDir
from trustray.generation import GenerationRequest, Message

NAME = "advglue"
DEV_FILE = "advglue/dev.json"
PLUS_PLUS_FILES = {
    "alpaca": "decodingtrust/adv-glue-plus-plus/data/alpaca.json",
    "vicuna": "decodingtrust/adv-glue-plus-plus/data/vicuna.json",
    "stable-vicuna": "decodingtrust/adv-glue-plus-plus/data/stable-vicuna.json",
}
DEV_SOURCE = "advglue-dev"
MAX_TOKENS = 16
SEED = "advglue"
_PER_CELL = {"smoke": 2, "quick": 6, "paper": None}


def sources(data: DataDir) -> dict[str, str]:
    """Source name → data file: AdvGLUE++ files when all are present, else the AdvGLUE dev set."""
    if all(data.exists(p) for p in PLUS_PLUS_FILES.values()):
        return dict(PLUS_PLUS_FILES)
    return {DEV_SOURCE: DEV_FILE}


def format_input(record: Mapping[str, Any], keys: Sequence[str | None], fmt: Mapping[str, Any]) -> str:
    """``key1: v1\\nkey2: v2`` with the source's key renames; semattack items use the sentence as is."""
    if record.get("method") == "semattack":
        return record["sentence"]
    lines = [fmt["line"].format(key=k, value=record[k]) for k in keys if k]
    message = fmt["join"].join(lines)
    for old, new in fmt["key_renames_in_order"]:
        message = message.replace(old, new)
    return message


class AdvGLUE(Described):
    """AdvGLUE(++) few-shot classification with label-word counting."""

    name = NAME
    # 2: answers without a single label word are flagged unparsed, not refused (scores unchanged)
    version = "2"
    label = "AdvGLUE"
    order = 0
    aliases = ("adv_robustness", "adv_glue", "adversarial_robustness")
    plans = _PER_CELL

    def items(self, data: DataDir, ctx: EvalContext) -> list[Item]:
        keys = data.constant(NAME, "task_to_keys")
        short = dict(data.constant(NAME, "TASK2SHORTPROMPT"))
        short.setdefault("mnli-mm", short["mnli"])  # the source adds this alias at run time
        demos = data.constant(NAME, "TASK2DEMO")
        mapping = data.constant(NAME, "answer_mapping")
        fmt = data.constant(NAME, "INPUT_FORMAT")
        parse_rules = data.constant(NAME, "ANSWER_PARSE")
        items: list[Item] = []
        for source, rel in sources(data).items():
            dataset = data.read_json(rel)
            for task in sorted(dataset, key=list(keys).index):
                records = list(enumerate(dataset[task]))
                chosen = stratified_subset(
                    records,
                    lambda ir: ir[1]["label"],
                    _per_label(ctx, len(mapping[task])),
                    f"{SEED}|{source}|{task}",
                )
                # mnli-mm has no demo turns of its own; it shares mnli's label words, so it uses mnli's.
                turns = [Message(t["role"], t["content"]) for t in demos.get(task, demos["mnli"])]
                for idx, rec in chosen:
                    user = Message("user", f"{short[task]}\n{format_input(rec, keys[task], fmt)}")
                    items.append(
                        Item(
                            item_id=_dt.item_id(NAME, f"{source}/{task}", f"{rel}#{task}", idx),
                            perspective=NAME,
                            scenario=f"{source}/{task}",
                            payload={"messages": _dt.to_pairs([*turns, user]), "max_tokens": MAX_TOKENS},
                            gold=str(rec["label"]),
                            meta={
                                "source": source,
                                "task": task,
                                "answer_mapping": mapping[task],
                                "quote_regex": parse_rules["remove_matches_of_regex"],
                                "split_before": parse_rules["split_before"],
                                "method": rec.get("method"),
                            },
                        )
                    )
        return items

    def request(self, item: Item, ctx: EvalContext) -> GenerationRequest:
        return _dt.chat_request(
            item, _dt.messages_from_payload(item.payload), item.payload["max_tokens"], ctx
        )

    def parse(self, item: Item, text: str) -> Parsed:
        pred = predict_label(
            text, item.meta["answer_mapping"], item.meta["quote_regex"], item.meta["split_before"]
        )
        if pred == -1:  # the source has no refusal phrases: no single label word is unparsed
            return Parsed(label=None, correct=False, unparsed=True)
        return Parsed(label=str(pred), correct=str(pred) == item.gold)

    def aggregate(self, rows: Sequence[ScoredRow], ctx: EvalContext) -> PerspectiveScore:
        cells: dict[str, list[ScoredRow]] = defaultdict(list)
        for r in rows:
            cells[r.item.scenario].append(r)
        if not cells:
            raise ValueError("advglue: no rows to aggregate")
        acc = {c: 100 * _dt.mean([bool(r.parsed.correct) for r in rs]) for c, rs in sorted(cells.items())}
        # the source's refusal rate is the fraction of -1 predictions (no single label word)
        refused = {c: 100 * _dt.mean([_dt.no_label(r.parsed) for r in rs]) for c, rs in sorted(cells.items())}
        unparsed = {c: 100 * _dt.mean([r.parsed.unparsed for r in rs]) for c, rs in sorted(cells.items())}
        scored = sorted({r.item.meta["source"] for r in rows})
        dataset = (
            "AdvGLUE dev (advglue/dev.json)"
            if scored == [DEV_SOURCE]
            else "AdvGLUE++ (" + ", ".join(scored) + ")"
        )
        notes = [f"dataset scored: {dataset}", _dt.reference_note(ctx)]
        if scored == [DEV_SOURCE]:
            notes.append("AdvGLUE++ files absent: the paper's AdvGLUE++ numbers are not comparable")
        if any(r.item.meta["task"] == "mnli-mm" for r in rows):
            notes.append("mnli-mm uses the mnli demo turns (the source has none for mnli-mm)")
        return PerspectiveScore(
            perspective=NAME,
            score=_dt.mean(list(acc.values())),
            refusal_rate=_dt.mean(list(refused.values())),
            unparsed_rate=_dt.mean(list(unparsed.values())),
            components={f"acc/{c}": v for c, v in acc.items()},
            missing=[] if scored != [DEV_SOURCE] else [f"advglue++/{s}" for s in PLUS_PLUS_FILES],
            notes=notes,
            n_items=len({r.item.item_id for r in rows}),
            n_generations=len(rows),
        )


def predict_label(text: str, answer_mapping: Mapping[str, int], quote_regex: str, split_before: str) -> int:
    """The source's ``response_to_labels('yesno')``: the single label word found, else −1.

    Every quoted span's content is deleted (``str.replace`` of each match, so the same text is
    also deleted where it occurs unquoted, as in the source); the answer is the text before
    the first ``split_before``.
    """
    response = text.lower()
    for match in re.findall(quote_regex, response):
        response = response.replace(match, "")
    answer = response.split(split_before)[0]
    found = [v for k, v in answer_mapping.items() if k in answer]
    return found[0] if len(found) == 1 else -1


def _per_label(ctx: EvalContext, n_labels: int) -> int | None:
    per_cell = _PER_CELL[ctx.profile]
    return None if per_cell is None else max(1, per_cell // n_labels)


register(AdvGLUE())
