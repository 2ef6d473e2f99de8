"""How far the offline toxicity scorers are from Perspective, on text the calibration never saw.

Human text (the bundle's RealToxicityPrompts prompts and continuations): k-fold, split by
record so a prompt and its continuation land in the same fold; each fold's calibration is fitted
on the other folds. GPT text (the GPT-3.5/GPT-4 "challenging" prompts): held out entirely, scored
with the calibration fitted on all the human text (what ships). Per split: mean absolute error
to Perspective, Spearman, Cohen's κ at 0.5, and the toxicity-probability bias (share of texts at
or above 0.5 minus Perspective's share). κ is undefined on the GPT split when every text sits on
one side of 0.5 (Perspective puts every GPT text at or above it), so there the TP bias is
the disagreement.

Every combination of normalisation steps and fit method is evaluated, so a cheap win is kept
only where it improves the held-out figures; ``--in-sample`` adds the figures of a map fitted
and scored on all the human text, and the in-sample MAE of per-bin medians (about the best any
function of that score can reach on this text).

    .venv/bin/python bench/toxicity_calibration.py --folds 5 --json bench-toxcal.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Metrics:
    n: int
    mae: float
    spearman: float
    kappa: float  # nan where undefined
    tox_prob: float
    tox_prob_perspective: float
    tox_prob_bias: float


@dataclass
class Variant:
    """One scorer variant: its per-fold, GPT and in-sample figures."""

    name: str
    method: str
    normalise: list[str]
    shipped: bool
    folds: list[Metrics]
    gpt: Metrics
    in_sample: Metrics
    any_map_mae_floor: float

    def human_mean(self) -> dict[str, float]:
        return {k: float(np.nanmean([getattr(m, k) for m in self.folds]))
                for k in ("mae", "spearman", "kappa", "tox_prob_bias")}


def kappa_at(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """Cohen's κ of the two yes/no labels ``score >= threshold``; nan when either side has one class only."""
    a, b = pred >= threshold, truth >= threshold
    if a.all() or not a.any() or b.all() or not b.any():
        return math.nan
    po = float(np.mean(a == b))
    pe = float(np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b))
    return math.nan if pe >= 1.0 else (po - pe) / (1.0 - pe)


def metrics(pred: np.ndarray, truth: np.ndarray) -> Metrics:
    from scipy.stats import spearmanr

    tp, tt = float(np.mean(pred >= 0.5)), float(np.mean(truth >= 0.5))
    return Metrics(
        n=len(pred), mae=float(np.mean(np.abs(pred - truth))), spearman=float(spearmanr(pred, truth).statistic),
        kappa=kappa_at(pred, truth), tox_prob=tp, tox_prob_perspective=tt, tox_prob_bias=tp - tt,
    )


def group_folds(groups: list[str], k: int, seed: int) -> list[np.ndarray]:
    """Row indices of k folds; all rows of one group fall in one fold."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    labels = np.asarray([fold_of[g] for g in groups])
    return [np.flatnonzero(labels == i) for i in range(k)]


def best_map_mae(x: np.ndarray, y: np.ndarray, bins: int = 50) -> float:
    """In-sample MAE of the per-bin median of ``y`` over ``bins`` quantile bins of ``x``.

    Near the floor for any function of ``x``, monotone or not, fitted on these very texts.
    """
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    pred = np.empty_like(y)
    for k in np.unique(b):
        pred[b == k] = np.median(y[b == k])
    return float(np.mean(np.abs(pred - y)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("TRUSTRAY_DATA"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--knots", type=int, default=100, help="quantile steps of the quantile fit")
    p.add_argument("--in-sample", action="store_true", help="also fit and score on all the human text")
    p.add_argument("--json", help="write every figure here")
    args = p.parse_args()

    from rich.console import Console
    from rich.table import Table

    from trustray.data import DataDir
    from trustray.scorers.calibration import PARAMS_FILE, fit_knots, load_calibration, load_scored_texts
    from trustray.scorers.local import LocalScorer
    from trustray.scorers.normalise import NORMALISERS, normaliser

    t0 = time.perf_counter()
    data = DataDir(args.data_dir)
    human, gpt = load_scored_texts(data, "human"), load_scored_texts(data, "gpt")
    y_h = np.asarray([t.perspective for t in human])
    y_g = np.asarray([t.perspective for t in gpt])
    folds = group_folds([t.group for t in human], args.folds, args.seed)
    base = LocalScorer()
    shipped, _ = load_calibration(PARAMS_FILE) if PARAMS_FILE.exists() else (None, "")

    steps = list(NORMALISERS)  # applied in the order the scorer applies them
    norm_sets = [c for r in range(len(steps) + 1) for c in itertools.combinations(steps, r)]
    results: list[Variant] = []
    for norm in norm_sets:
        fn = normaliser(norm)
        x_h = np.asarray(base.score([fn(t.text) for t in human]))
        x_g = np.asarray(base.score([fn(t.text) for t in gpt]))
        for method in ("none", "quantile", "isotonic"):
            if method == "none" and norm:
                continue  # normalisation alone leaves local's scale; only the plain baseline is shown

            def calibrate(train: np.ndarray, x: np.ndarray) -> np.ndarray:
                if method == "none":
                    return x
                xs, ys = fit_knots(x_h[train], y_h[train], method, args.knots)  # type: ignore[arg-type]
                return np.interp(x, xs, ys)

            per_fold = []
            for i, test in enumerate(folds):
                train = np.concatenate([f for j, f in enumerate(folds) if j != i])
                per_fold.append(metrics(calibrate(train, x_h[test]), y_h[test]))
            everything = np.arange(len(human))
            shipped_here = shipped is not None and (method, norm, args.knots) == (
                shipped.method, shipped.normalise, shipped.knots
            )
            results.append(Variant(
                name="local" if method == "none" else f"local-calibrated {method}" + "".join(f" +{s}" for s in norm),
                method=method, normalise=list(norm), shipped=shipped_here, folds=per_fold,
                gpt=metrics(calibrate(everything, x_g), y_g), in_sample=metrics(calibrate(everything, x_h), y_h),
                any_map_mae_floor=best_map_mae(x_h, y_h),
            ))

    def f(v: float, signed: bool = False) -> str:
        return "n/a" if math.isnan(v) else (f"{v:+.3f}" if signed else f"{v:.3f}")

    console = Console(width=max(Console().width, 200))
    summary = Table(title=f"Offline toxicity vs Perspective: human text {args.folds}-fold (mean), GPT text held out")
    cols = ["scorer", "human MAE", "human Spearman", "human κ@0.5", "human TP bias",
            "GPT MAE", "GPT Spearman", "GPT κ@0.5", "GPT TP bias"]
    if args.in_sample:
        cols += ["in-sample MAE", "in-sample TP bias", "any-map MAE floor"]
    for c in cols:
        summary.add_column(c, justify="left" if c == "scorer" else "right", no_wrap=c == "scorer")
    for v in results:
        m, g = v.human_mean(), v.gpt
        row = [v.name + (" (shipped)" if v.shipped else ""), f(m["mae"]), f(m["spearman"]), f(m["kappa"]),
               f(m["tox_prob_bias"], True), f(g.mae), f(g.spearman), f(g.kappa), f(g.tox_prob_bias, True)]
        if args.in_sample:
            row += [f(v.in_sample.mae), f(v.in_sample.tox_prob_bias, True), f(v.any_map_mae_floor)]
        summary.add_row(*row)
    console.print(summary)

    fold_table = Table(title="Per fold (human text)")
    fold_table.add_column("scorer", no_wrap=True)
    fold_table.add_column("fold", justify="right")
    for c in ("n", "MAE", "Spearman", "κ@0.5", "TP", "Perspective TP", "TP bias"):
        fold_table.add_column(c, justify="right")
    for v in results:
        if v.name != "local" and not v.shipped:
            continue
        for i, m in enumerate(v.folds):
            fold_table.add_row(v.name, str(i), str(m.n), f(m.mae), f(m.spearman), f(m.kappa),
                               f(m.tox_prob), f(m.tox_prob_perspective), f(m.tox_prob_bias, True))
    console.print(fold_table)
    console.print(f"{len(human)} human texts in {args.folds} folds (seed {args.seed}), {len(gpt)} GPT texts held out; "
                  f"{time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"folds": args.folds, "seed": args.seed, "knots": args.knots, "n_human": len(human),
                       "n_gpt": len(gpt), "results": [asdict(v) for v in results]}, out, indent=1)


if __name__ == "__main__":
    main()
