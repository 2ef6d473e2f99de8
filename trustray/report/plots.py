"""The report's figures (matplotlib, Agg backend), returned as PNG bytes."""

from __future__ import annotations

import io
import math

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trustray.compress.spec import family_of
from trustray.metrics import MetricId
from trustray.scoring.perspectives import label

DENSE_BITS = 16


def _plain(ax: plt.Axes) -> None:
    """Axis tick labels as plain numbers: no offset (``+5.4e2``) or scientific notation."""
    for axis in (ax.xaxis, ax.yaxis):
        fmt = axis.get_major_formatter()
        if isinstance(fmt, matplotlib.ticker.ScalarFormatter):
            fmt.set_useOffset(False)
            fmt.set_scientific(False)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _err(values: pd.Series) -> np.ndarray:
    return values.astype(float).fillna(0.0).to_numpy()


def trust_vs_compression(summary: pd.DataFrame) -> bytes:
    """Average trust vs bits (quantisation) and vs sparsity (pruning), one line per method,
    error bars = std over calibration seeds; the dense model is the reference."""
    family = summary["method"].map(family_of)
    dense = summary[family == "none"]
    quant = summary[family == "quantisation"]
    prune = summary[family == "pruning"]
    panels = [p for p in (("bits", quant), ("sparsity", prune)) if not p[1].empty] or [("bits", quant)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (xcol, df) in zip(axes[0], panels):
        for method, g in df.groupby("method", sort=True):
            g = g.sort_values(xcol)
            x = g[xcol].astype(float) * (100 if xcol == "sparsity" else 1)
            ax.errorbar(x, g["avg_trust"], yerr=_err(g["avg_trust_std"]), marker="o", capsize=4, label=method)
        for _, d in dense.iterrows():
            if xcol == "bits":
                ax.errorbar([DENSE_BITS], [d["avg_trust"]], yerr=[0.0], marker="*", markersize=12,
                            color="black", linestyle="none", label=f"{d['setting']} ({DENSE_BITS}-bit)")
            else:
                ax.axhline(d["avg_trust"], color="black", linestyle="--", label=d["setting"])
        ax.set_xlabel("bits per weight" if xcol == "bits" else "sparsity (%)")
        ax.set_ylabel("average trust score (0–100)")
        ax.set_title(f"Trust vs {'bits' if xcol == 'bits' else 'sparsity'}")
        ax.grid(alpha=0.3)
        _plain(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _png(fig)


def radar(summary: pd.DataFrame, trust: list[str], baseline: str | None) -> bytes:
    """One radar chart per setting across the trust perspectives (baseline dashed)."""
    n = len(summary)
    cols = min(4, max(n, 1))
    rows = math.ceil(max(n, 1) / cols)
    fig = plt.figure(figsize=(3.6 * cols, 3.6 * rows))
    k = max(len(trust), 1)
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False).tolist()
    base = summary[summary["setting"] == baseline] if baseline else summary.iloc[:0]
    for i, (_, r) in enumerate(summary.iterrows()):
        ax = fig.add_subplot(rows, cols, i + 1, projection="polar")
        for data, style in ((base, "--"), (summary.iloc[[i]], "-")):
            if not trust or data.empty or (style == "--" and data.iloc[0]["setting"] == r["setting"]):
                continue
            vals = data.iloc[0][trust].astype(float).fillna(0.0).tolist()
            ax.plot(angles + angles[:1], vals + vals[:1], style, linewidth=1.5)
            if style == "-":
                ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.2)
        ax.set_xticks(angles)
        ax.set_xticklabels([label(p) for p in trust], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_yticks([25, 50, 75])
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(str(r["setting"]), fontsize=9)
    fig.tight_layout()
    return _png(fig)


def refusal_rates(summary: pd.DataFrame, perspectives: list[str]) -> bytes:
    """Grouped bars: refusal rate per perspective for every setting."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(perspectives) + 2), 4))
    n = max(len(summary), 1)
    width = 0.8 / n
    x = np.arange(len(perspectives))
    for i, (_, r) in enumerate(summary.iterrows()):
        rates = [r[MetricId(p, "refusal").column] for p in perspectives]
        vals = [0.0 if pd.isna(v) else float(v) for v in rates]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=str(r["setting"]))
    ax.set_xticks(x)
    ax.set_xticklabels([label(p) for p in perspectives], rotation=30, ha="right")
    ax.set_ylabel("refusal rate (%)")
    ax.set_title("Refusal rates")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def trust_vs_size(summary: pd.DataFrame) -> bytes:
    """The efficiency / trust frontier: average trust vs the bytes the weights need at their
    served precision (filled) and the checkpoint's size on disk (hollow)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (method, g) in enumerate(summary.groupby("method", sort=True)):
        color = f"C{i}"
        name = "dense" if family_of(method) == "none" else method
        for col, face, what in (("weight_bytes", color, "weights"), ("model_size_bytes", "none", "disk")):
            mb = g[col].astype(float) / 1e6
            ax.errorbar(mb, g["avg_trust"], yerr=_err(g["avg_trust_std"]), marker="o", linestyle="none",
                        capsize=4, color=color, markerfacecolor=face, label=f"{name} ({what})")
        for x, y, s in zip(g["weight_bytes"].astype(float) / 1e6, g["avg_trust"], g["setting"]):
            if not (pd.isna(x) or pd.isna(y)):
                ax.annotate(str(s), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("size (MB): weights at served precision (filled), on disk (hollow)")
    ax.set_ylabel("average trust score (0–100)")
    ax.set_title("Trust vs model size")
    ax.grid(alpha=0.3)
    _plain(ax)
    ax.legend(fontsize=7)
    return _png(fig)
