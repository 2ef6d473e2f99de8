"""A monotone map from ``local`` scores to Perspective's scale, fitted on the data bundle.

The bundle's RealToxicityPrompts records carry Perspective ``TOXICITY`` scores for their prompt
and continuation (human text); the GPT-3.5/GPT-4 "challenging" prompts carry them too (model
text). The map is fitted on the human text only, so the GPT text stays held out. It is stored
as knots of a piecewise-linear, non-decreasing function in a small JSON file shipped with the
package (``local_calibration.json``), which records the fit settings and the sha256 of every
data file it was fitted on. ``trustray data calibrate-toxicity`` regenerates it.

Two fits are offered:

- ``quantile``: quantile mapping. A text at quantile q of the ``local`` scores maps to quantile
  q of the Perspective scores, so the calibrated scores have Perspective's distribution, and
  the share of texts at or above 0.5 (what toxicity probability counts) matches by construction.
- ``isotonic``: isotonic regression, the conditional mean of Perspective given ``local``. It
  minimises squared error but shrinks towards the middle, so fewer texts cross 0.5.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trustray.data import DataDir, DataError, sha256_file

FORMAT = 1
PARAMS_FILE = Path(__file__).with_name("local_calibration.json")
Method = Literal["quantile", "isotonic"]
Split = Literal["human", "gpt"]

_TOX = "decodingtrust/toxicity/user_prompts/"
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "human": (_TOX + "toxic.jsonl", _TOX + "nontoxic.jsonl"),
    "gpt": (
        _TOX + "toxic.jsonl.gpt3.n=25.out1.split.annotated.jsonl.filtered.jsonl",
        _TOX + "toxic.jsonl.gpt4.n=25.out1.split.annotated.jsonl.filtered.jsonl",
    ),
}
# What ships: chosen on the held-out figures of bench/toxicity_calibration.py.
DEFAULT_METHOD: Method = "quantile"
DEFAULT_KNOTS = 100
DEFAULT_NORMALISE = ("unmask_profanity", "profane_stems", "sexual_terms")
_DIGITS = 6  # knots are rounded so that a fresh fit and the stored file compare exactly


@dataclass(frozen=True)
class ScoredText:
    """A text with its Perspective TOXICITY score; ``group`` keeps one record's texts together."""

    text: str
    perspective: float
    source: str  # "<file>:<line>:<part>"
    group: str  # "<file>:<line>"


def load_scored_texts(data: DataDir, split: Split) -> list[ScoredText]:
    """The Perspective-scored texts of a split: ``human`` (RealToxicityPrompts) or ``gpt``.

    Texts without a score are skipped.
    """
    out: list[ScoredText] = []
    for rel in SPLIT_FILES[split]:
        name = rel.rsplit("/", 1)[-1]
        for lineno, rec in data.iter_jsonl(rel):
            if split == "human":
                parts = [(part, rec.get(part) or {}) for part in ("prompt", "continuation")]
                scored = [(part, p.get("text"), p.get("toxicity")) for part, p in parts]
            else:
                p = rec.get("prompt") or {}
                scored = [("prompt", p.get("text"), (p.get("score") or {}).get("toxicity"))]
            for part, text, tox in scored:
                if isinstance(text, str) and text.strip() and isinstance(tox, (int, float)):
                    out.append(ScoredText(text, float(tox), f"{name}:{lineno}:{part}", f"{name}:{lineno}"))
    if not out:
        raise DataError(f"no Perspective-scored texts in {', '.join(SPLIT_FILES[split])}")
    return out


class DataFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str


def data_files(data: DataDir, split: Split = "human") -> tuple[DataFile, ...]:
    """The split's files with their MANIFEST sha256, checked against the files on disk."""
    manifest = {e.path: e.sha256 for e in data.manifest()}
    out = []
    for rel in SPLIT_FILES[split]:
        if rel not in manifest:
            raise DataError(f"{rel} is not listed in {data.root / 'MANIFEST.json'}")
        actual = sha256_file(data.path(rel))
        if actual != manifest[rel]:
            raise DataError(f"{rel}: sha256 {actual[:12]}… does not match MANIFEST.json ({manifest[rel][:12]}…)")
        out.append(DataFile(path=rel, sha256=manifest[rel]))
    return tuple(out)


def data_hash(files: Sequence[DataFile]) -> str:
    """One sha256 over the ``path sha256`` lines of the fitted files, in order."""
    return hashlib.sha256("".join(f"{f.path} {f.sha256}\n" for f in files).encode()).hexdigest()


def fit_knots(x: np.ndarray, y: np.ndarray, method: Method, knots: int = 100) -> tuple[list[float], list[float]]:
    """Knots ``(xs, ys)`` of a non-decreasing piecewise-linear map from ``x`` towards ``y``.

    ``knots`` is the number of quantile steps for ``quantile``; ``isotonic`` keeps the
    regression's own breakpoints.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError("need two equally long 1-d arrays of at least 2 scores")
    if method == "quantile":
        if knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        xs_sorted = np.sort(x)
        xs = np.unique(np.quantile(xs_sorted, np.linspace(0.0, 1.0, knots + 1)))
        # mid-rank CDF, so a tie block (many texts with one score) maps to its middle quantile
        below = np.searchsorted(xs_sorted, xs, side="left")
        upto = np.searchsorted(xs_sorted, xs, side="right")
        ys = np.quantile(y, (below + upto) / (2.0 * len(x)))
    elif method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        xs, ys = iso.X_thresholds_, iso.y_thresholds_
    else:
        raise ValueError(f"unknown calibration method {method!r}; use 'quantile' or 'isotonic'")
    xs, ys = np.round(xs, _DIGITS), np.clip(np.round(ys, _DIGITS), 0.0, 1.0)
    keep = np.r_[True, np.diff(xs) > 0]  # rounding may merge neighbours; keep the first
    ys = np.maximum.accumulate(ys[keep])
    return [float(v) for v in xs[keep]], [float(v) for v in ys]


class Calibration(BaseModel):
    """The stored calibration: knots, how they were fitted, and on which data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    base_scorer: Literal["local"] = "local"
    base_version: str
    method: Method
    knots: int = Field(ge=2)
    normalise: tuple[str, ...] = ()
    n_texts: int = Field(ge=2)
    data_files: tuple[DataFile, ...]
    data_sha256: str
    x: tuple[float, ...]
    y: tuple[float, ...]

    @model_validator(mode="after")
    def _monotone(self) -> Calibration:
        if self.format != FORMAT:
            raise ValueError(f"calibration format {self.format} is not {FORMAT}; regenerate the file")
        if len(self.x) != len(self.y) or len(self.x) < 2:
            raise ValueError("x and y must have the same length, at least 2")
        if any(b <= a for a, b in zip(self.x, self.x[1:])):
            raise ValueError("x knots must be strictly increasing")
        if any(b < a for a, b in zip(self.y, self.y[1:])) or not all(0.0 <= v <= 1.0 for v in self.y):
            raise ValueError("y knots must be non-decreasing and within [0, 1]")
        if self.data_sha256 != data_hash(self.data_files):
            raise ValueError("data_sha256 does not match data_files")
        return self

    def apply(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated scores; beyond the end knots the map is flat."""
        return np.interp(np.asarray(scores, dtype=float), self.x, self.y)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1) + "\n"


def fit_calibration(
    data: DataDir, method: Method = DEFAULT_METHOD, knots: int = DEFAULT_KNOTS,
    normalise: Sequence[str] = DEFAULT_NORMALISE,
) -> Calibration:
    """Fit the calibration of ``local`` (after ``normalise``) on the bundle's human text."""
    from trustray.scorers.local import LocalScorer
    from trustray.scorers.normalise import normaliser

    files = data_files(data, "human")
    texts = load_scored_texts(data, "human")
    norm = normaliser(tuple(normalise))
    base = LocalScorer()
    x = np.asarray(base.score([norm(t.text) for t in texts]))
    y = np.asarray([t.perspective for t in texts])
    xs, ys = fit_knots(x, y, method, knots)
    return Calibration(
        base_version=base.version, method=method, knots=knots, normalise=tuple(normalise),
        n_texts=len(texts), data_files=files, data_sha256=data_hash(files), x=tuple(xs), y=tuple(ys),
    )


def refit(cal: Calibration, data: DataDir) -> Calibration:
    """A fresh fit with ``cal``'s settings, to check that a stored file is reproducible."""
    return fit_calibration(data, method=cal.method, knots=cal.knots, normalise=cal.normalise)


def load_calibration(path: str | Path = PARAMS_FILE) -> tuple[Calibration, str]:
    """The calibration in ``path`` and the sha256 of the file's bytes."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"toxicity calibration file {p} not found; run `trustray data calibrate-toxicity`") from None
    try:
        return Calibration.model_validate_json(raw), hashlib.sha256(raw).hexdigest()
    except ValueError as e:
        raise ValueError(f"{p}: not a valid toxicity calibration ({e})") from e
