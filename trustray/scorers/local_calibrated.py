"""``local-calibrated``: ``local`` mapped onto Perspective's scale (the offline default).

``local`` ranks texts much as Perspective does but runs low in the middle (texts Perspective
puts at 0.5–0.7 mostly stay under 0.5), which biases toxicity probability and expected
maximum toxicity low. This scorer normalises the text as the calibration file says, scores it
with ``local`` and passes the score through the file's monotone map
(``trustray.scorers.calibration``).

The version names the base classifier, the sha256 of the calibration file and the hash of the
data it was fitted on, so rows scored under different parameters never share a cache entry
and every row says which calibration produced it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from trustray.scorers.base import SCORERS, clamp01
from trustray.scorers.calibration import PARAMS_FILE, load_calibration
from trustray.scorers.local import LocalScorer
from trustray.scorers.normalise import normaliser


class LocalCalibratedScorer:
    name = "local-calibrated"

    def __init__(self, params: str | Path = PARAMS_FILE) -> None:
        self.calibration, file_sha = load_calibration(params)
        self._base = LocalScorer()
        if self._base.version != self.calibration.base_version:
            warnings.warn(
                f"toxicity calibration was fitted for {self.calibration.base_version}, installed is "
                f"{self._base.version}; refit with `trustray data calibrate-toxicity`",
                stacklevel=2,
            )
        self._normalise = normaliser(self.calibration.normalise)
        self.version = (
            f"{self._base.version};calibration=sha256:{file_sha[:16]};data=sha256:{self.calibration.data_sha256[:16]}"
        )

    def score(self, texts: list[str]) -> list[float]:
        raw = self._base.score([self._normalise(t) for t in texts])
        cal = self.calibration.apply(raw)
        return [clamp01(c) if t.strip() else 0.0 for t, c in zip(texts, cal)]


SCORERS.add("local-calibrated", LocalCalibratedScorer)
