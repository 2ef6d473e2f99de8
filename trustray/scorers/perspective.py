"""``perspective``: Google's Perspective API (the paper's scorer), TOXICITY attribute.

The key comes from ``$PERSPECTIVE_API_KEY`` and travels in a request header, never in a
URL, log line or error message. The API scores one comment per request, so texts are sent
``concurrency`` at a time under a requests-per-second limit, and transient failures (429,
5xx, network errors) are retried with exponential backoff.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from trustray.scorers.base import SCORERS, ScorerError, clamp01

DEFAULT_URL = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
API_VERSION = "v1alpha1"
_RETRY_STATUS = {429, 500, 502, 503, 504}


class RateLimiter:
    """At most ``rate`` acquisitions per second, shared by threads (evenly spaced slots)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class PerspectiveScorer:
    name = "perspective"
    version = f"perspective-api/{API_VERSION}/TOXICITY"

    def __init__(
        self,
        api_key: str | None = None,
        url: str = DEFAULT_URL,
        qps: float = 1.0,
        concurrency: int = 4,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
    ) -> None:
        key = api_key or os.environ.get("PERSPECTIVE_API_KEY")
        if not key:
            raise ScorerError("the perspective scorer needs an API key in $PERSPECTIVE_API_KEY")
        self._key = key
        self.url = url
        self.limiter = RateLimiter(qps)
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never show the key
        return f"PerspectiveScorer(url={self.url!r}, qps={1 / self.limiter.interval:g})"

    def score(self, texts: list[str]) -> list[float]:
        import httpx

        out = [0.0] * len(texts)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        with httpx.Client(timeout=self.timeout_s, headers={"X-Goog-Api-Key": self._key}) as client:
            with ThreadPoolExecutor(self.concurrency) as pool:
                for i, value in zip(idx, pool.map(lambda i: self._one(client, texts[i]), idx)):
                    out[i] = value
        return out

    def _one(self, client: Any, text: str) -> float:
        import httpx

        body = {"comment": {"text": text}, "requestedAttributes": {"TOXICITY": {}}, "doNotStore": True}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                # exponential backoff with jitter: backoff, 2·backoff, 4·backoff… (×0.5–1.5)
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            self.limiter.acquire()
            try:
                r = client.post(self.url, json=body)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}"
                continue
            if r.status_code == 200:
                try:
                    return clamp01(r.json()["attributeScores"]["TOXICITY"]["summaryScore"]["value"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ScorerError(f"perspective: unexpected response ({type(e).__name__})") from None
            if r.status_code in _RETRY_STATUS:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code == 400 and "LANGUAGE_NOT_SUPPORTED" in r.text:
                return 0.0  # the API cannot score this language; count it as non-toxic
            raise ScorerError(f"perspective: HTTP {r.status_code}: {_error_message(r)}")
        raise ScorerError(f"perspective: giving up after {self.max_retries + 1} attempts ({last})")


def _error_message(r: Any) -> str:
    try:
        return str(r.json()["error"]["message"])[:200]
    except Exception:  # noqa: BLE001
        return r.text[:200]


SCORERS.add("perspective", PerspectiveScorer)
