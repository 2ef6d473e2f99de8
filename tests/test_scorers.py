"""Toxicity scorers: local classifier, Perspective client against a loopback fake, score cache."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trustray.registry import UnknownNameError
from trustray.scorers import SCORERS, CachedScorer, ScorerError, get_scorer
from trustray.scorers.perspective import PerspectiveScorer, RateLimiter

KEY = "test-key-0123456789"


class FakePerspective:
    """A loopback stand-in for the Perspective API: toxicity = share of 'bad' words.

    ``fail_first`` requests per text answer 503 (or 429) before succeeding.
    """

    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.fail_first, self.status = fail_first, status
        self.calls: list[tuple[float, str, str | None]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["comment"]["text"]
                with fake.lock:
                    fake.calls.append((time.monotonic(), text, self.headers.get("X-Goog-Api-Key")))
                    seen = sum(t == text for _, t, _ in fake.calls)
                if self.headers.get("X-Goog-Api-Key") != KEY:
                    return self._send(403, {"error": {"message": "API key not valid"}})
                if "ñ" in text:
                    return self._send(400, {"error": {"message": "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"}})
                if seen <= fake.fail_first:
                    return self._send(fake.status, {"error": {"message": "try later"}})
                words = text.split()
                value = sum(w == "bad" for w in words) / len(words)
                self._send(200, {"attributeScores": {"TOXICITY": {"summaryScore": {"value": value}}}})

            def _send(self, code: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return H


@contextlib.contextmanager
def serve(fake: FakePerspective) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1alpha1/comments:analyze"
    finally:
        server.shutdown()
        server.server_close()


def test_registry_and_lookup_errors() -> None:
    assert {"local", "perspective", "hf"} <= set(SCORERS)
    with pytest.raises(UnknownNameError, match="did you mean 'local'"):
        get_scorer("locl")


def test_local_scorer_orders_toxic_above_benign_and_clamps_empty() -> None:
    s = get_scorer("local")
    toxic, benign, empty = s.score(["you are a stupid fucking idiot", "the weather is nice today", "  "])
    assert 0.0 <= benign < 0.5 < toxic <= 1.0
    assert empty == 0.0
    assert s.name == "local" and s.version.startswith("alt-profanity-check==")


def test_perspective_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    with pytest.raises(ScorerError, match=r"\$PERSPECTIVE_API_KEY"):
        get_scorer("perspective")


def test_perspective_scores_in_order_with_key_in_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", KEY)
    fake = FakePerspective()
    with serve(fake) as url:
        s = get_scorer("perspective", url=url, qps=1000, concurrency=4)
        texts = ["bad bad", "good", "", "bad good good good", "señor"]
        assert s.score(texts) == [1.0, 0.0, 0.0, 0.25, 0.0]
    assert {k for _, _, k in fake.calls} == {KEY}
    assert len(fake.calls) == 4  # the empty text is not sent
    assert KEY not in repr(s)


def test_perspective_retries_transient_errors_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", KEY)
    fake = FakePerspective(fail_first=2, status=503)
    with serve(fake) as url:
        s = PerspectiveScorer(url=url, qps=1000, backoff_s=0.05, max_retries=3)
        t0 = time.monotonic()
        assert s.score(["bad x"]) == [0.5]
        elapsed = time.monotonic() - t0
    assert len(fake.calls) == 3
    assert elapsed >= 0.05 * 0.5 + 0.1 * 0.5  # two backoffs (jitter ≥ 0.5×)


def test_perspective_gives_up_and_error_hides_key(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePerspective(fail_first=100, status=429)
    with serve(fake) as url:
        s = PerspectiveScorer(api_key=KEY, url=url, qps=1000, backoff_s=0.001, max_retries=2)
        with pytest.raises(ScorerError, match="giving up after 3 attempts") as e:
            s.score(["bad"])
        assert KEY not in str(e.value)
        bad_key = PerspectiveScorer(api_key="wrong", url=url, qps=1000)
        with pytest.raises(ScorerError, match="HTTP 403: API key not valid"):
            bad_key.score(["x"])
    assert len([c for c in fake.calls if c[2] == KEY]) == 3


def test_perspective_rate_limit_spaces_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePerspective()
    with serve(fake) as url:
        s = PerspectiveScorer(api_key=KEY, url=url, qps=20, concurrency=4)
        s.score([f"bad {i}" for i in range(6)])
    times = sorted(t for t, _, _ in fake.calls)
    assert times[-1] - times[0] >= 5 / 20 * 0.9  # 6 requests at 20/s span ≥ 0.25 s


def test_rate_limiter_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


class _Counting:
    name, version = "counting", "1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, texts: list[str]) -> list[float]:
        self.seen += texts
        return [len(t) / 100 for t in texts]


def test_cache_scores_each_text_once_per_scorer_version(tmp_path: Path) -> None:
    inner = _Counting()
    db = tmp_path / "scores.sqlite"
    cached = CachedScorer(inner, db)
    assert cached.score(["ab", "abc", "ab"]) == [0.02, 0.03, 0.02]
    assert inner.seen == ["ab", "abc"]
    again = CachedScorer(inner, db)  # a new process sees the same file
    assert again.score(["abc", "abcd"]) == [0.03, 0.04]
    assert inner.seen == ["ab", "abc", "abcd"] and again.hits == 1
    inner.version = "2"
    assert CachedScorer(inner, db).score(["ab"]) == [0.02]
    assert inner.seen[-1] == "ab"  # a new version is not served old scores
    assert (cached.name, cached.version) == ("counting", "1")


def test_hf_scorer_bad_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScorerError, match="cannot load toxicity classifier"):
        get_scorer(f"hf:{tmp_path / 'no-such-model'}")
