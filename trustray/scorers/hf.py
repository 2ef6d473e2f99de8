"""``hf:<model>``: a Hugging Face text-classification model as a toxicity scorer (optional).

transformers is imported only when the scorer is built; weights must be local or reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trustray.scorers.base import SCORERS, ScorerError, clamp01

DEFAULT_TOXIC_LABELS = ("toxic", "toxicity", "label_1", "hate", "offensive")


class HFClassifierScorer:
    def __init__(self, model: str, toxic_label: str | None = None, batch_size: int = 32, device: str = "cpu") -> None:
        if model.startswith(("/", "./", "~")) and not Path(model).expanduser().exists():
            raise ScorerError(f"cannot load toxicity classifier {model!r}: no such directory")
        try:
            from transformers import pipeline
        except ImportError as e:  # pragma: no cover - transformers is a dependency
            raise ScorerError("the hf scorer needs transformers: pip install transformers") from e
        try:
            self._pipe: Any = pipeline("text-classification", model=model, top_k=None, device=device)
        except Exception as e:  # noqa: BLE001 - many loader errors; one clear message
            raise ScorerError(f"cannot load toxicity classifier {model!r}: {e}") from e
        self.name = f"hf:{model}"
        self.version = str(getattr(self._pipe.model.config, "_commit_hash", None) or "local")
        self.toxic_label = toxic_label
        self.batch_size = batch_size

    def _toxic_prob(self, scores: list[dict[str, Any]]) -> float:
        by_label = {s["label"].lower(): float(s["score"]) for s in scores}
        wanted = (self.toxic_label.lower(),) if self.toxic_label else DEFAULT_TOXIC_LABELS
        for label in wanted:
            if label in by_label:
                return clamp01(by_label[label])
        raise ScorerError(f"{self.name}: no toxic label among {sorted(by_label)}; pass toxic_label=")

    def score(self, texts: list[str]) -> list[float]:
        out = [0.0] * len(texts)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        if idx:
            results = self._pipe([texts[i] for i in idx], batch_size=self.batch_size, truncation=True)
            for i, r in zip(idx, results):
                out[i] = self._toxic_prob(r)
        return out


SCORERS.add("hf", HFClassifierScorer)
