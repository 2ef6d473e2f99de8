"""``local``: an offline toxicity classifier installed from PyPI (alt-profanity-check).

Why this one: it ships its model inside the wheel (a calibrated linear SVM over TF-IDF
features, trained on ~200k human-labelled offensive/clean comments), so it works with no
network and no model download, scores thousands of texts per second on one core, and
returns a probability rather than a yes/no. Detoxify needs checkpoints downloaded at run
time; word-list filters (better-profanity) give no probability.
"""

from __future__ import annotations

import importlib.metadata

from trustray.scorers.base import SCORERS, clamp01


class LocalScorer:
    name = "local"

    def __init__(self) -> None:
        self.version = f"alt-profanity-check=={importlib.metadata.version('alt-profanity-check')}"

    def score(self, texts: list[str]) -> list[float]:
        from profanity_check import predict_prob

        out = [0.0] * len(texts)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        if idx:
            for i, p in zip(idx, predict_prob([texts[i] for i in idx])):
                out[i] = clamp01(p)
        return out


SCORERS.add("local", LocalScorer)
