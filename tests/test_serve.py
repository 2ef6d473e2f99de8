"""Model serving: OpenAI translation (pure), the batcher, ModelServer on the real engine, and the
Serve app on a local Ray (handle and HTTP)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from trustray.generation import Generation, GenerationRequest, Message, SamplingParams
from trustray.serve import openai_api as oa
from trustray.serve.server import DynamicBatcher, ModelServer

# -- OpenAI translation (no model, no Ray) ----------------------------------------------------


def _error(model, body) -> oa.OpenAIError:
    with pytest.raises(oa.OpenAIError) as info:
        oa.parse_body(model, body)
    return info.value


@pytest.mark.parametrize(
    ("model", "body", "expected"),
    [
        (oa.CompletionBody, {"prompt": "x", "temprature": 0.5}, "temprature: unknown field"),
        (oa.CompletionBody, {"max_tokens": 3}, "prompt: Field required"),
        (oa.CompletionBody, {"prompt": "x", "max_tokens": 0}, "max_tokens"),
        (oa.CompletionBody, {"prompt": "x", "top_p": 0}, "top_p"),
        (oa.CompletionBody, {"prompt": "x", "stream_options": {"include_usage": True}}, "only allowed with stream"),
        (oa.ChatBody, {"messages": [{"role": "user", "content": "x"}], "stream": True,
                       "stream_options": {"usage": True}}, "stream_options.usage: unknown field"),
        (oa.CompletionBody, {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "at most 4 stop"),
        (oa.CompletionBody, {"prompt": "x", "stop": ""}, "non-empty"),
        (oa.CompletionBody, {"prompt": []}, "prompt list must hold 1"),
        (oa.ChatBody, {"messages": []}, "messages"),
        (oa.ChatBody, {"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        (oa.ChatBody, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
                       "max_completion_tokens": 3}, "disagree"),
    ],
)
def test_bad_bodies_name_the_field(model, body, expected):
    e = _error(model, body)
    assert e.status == 400
    assert expected in e.message
    assert e.body()["error"]["type"] == "invalid_request_error"


def test_non_json_and_non_object_bodies():
    assert "not valid JSON" in _error(oa.CompletionBody, b"{not json").message
    assert "JSON object" in _error(oa.CompletionBody, b"[1, 2]").message
    assert "JSON object" in _error(oa.ChatBody, [1, 2]).message


def test_completion_requests_carry_sampling_and_seed():
    body = oa.parse_body(
        oa.CompletionBody,
        {"prompt": ["a", "b"], "n": 3, "seed": 11, "temperature": 0.7, "top_p": 0.9, "top_k": -1,
         "stop": "\n", "user": "someone"},
    )
    reqs = oa.completion_requests(body, request_id="cmpl-x")
    assert [r.request_id for r in reqs] == ["cmpl-x-0", "cmpl-x-1"]
    assert [r.prompt for r in reqs] == ["a", "b"]
    assert all(r.seed == 11 for r in reqs)
    assert reqs[0].sampling == SamplingParams(temperature=0.7, top_p=0.9, top_k=0, max_tokens=16, n=3, stop=("\n",))


def test_unseeded_requests_draw_different_seeds():
    body = oa.parse_body(oa.CompletionBody, {"prompt": "a"})
    seeds = {oa.completion_requests(body, request_id="r")[0].seed for _ in range(5)}
    assert len(seeds) == 5


def test_greedy_with_n_above_one_is_refused():
    body = oa.parse_body(oa.CompletionBody, {"prompt": "a", "n": 2, "temperature": 0})
    with pytest.raises(oa.OpenAIError, match="n > 1 needs temperature > 0"):
        oa.completion_requests(body, request_id="r")


def test_chat_request_joins_text_parts_and_takes_the_limit():
    body = oa.parse_body(
        oa.ChatBody,
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
         "max_completion_tokens": 7, "temperature": 0},
    )
    req = oa.chat_request(body, request_id="c", default_max_tokens=99)
    assert req.messages == (Message("system", "Be brief."), Message("user", "Hi there"))
    assert req.sampling.max_tokens == 7 and req.sampling.greedy
    default = oa.chat_request(oa.parse_body(oa.ChatBody, {"messages": [{"role": "user", "content": "x"}]}),
                              request_id="c", default_max_tokens=99)
    assert default.sampling.max_tokens == 99 and default.sampling.temperature == 1.0


def test_completion_response_indices_and_usage():
    gens = [
        Generation("r-0", ("a", "b"), prompt_tokens=3, output_tokens=(2, 5), finish_reasons=("stop", "length")),
        Generation("r-1", ("c", "d"), prompt_tokens=4, output_tokens=(1, 1), finish_reasons=("length", "stop")),
    ]
    resp = oa.completion_response(gens, response_id="cmpl-1", model_id="m", created=5)
    assert [(c["index"], c["text"], c["finish_reason"]) for c in resp["choices"]] == [
        (0, "a", "stop"), (1, "b", "length"), (2, "c", "length"), (3, "d", "stop")]
    assert resp["usage"] == {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
    chat = oa.chat_response(gens[0], response_id="chatcmpl-1", model_id="m", created=5)
    assert [c["message"]["content"] for c in chat["choices"]] == ["a", "b"]
    assert chat["usage"]["total_tokens"] == 10 and chat["object"] == "chat.completion"


def test_request_body_round_trips_through_the_server_schema():
    req = GenerationRequest("q", SamplingParams(temperature=0.5, top_k=0, max_tokens=9, n=2, stop=("x",)), seed=4,
                            messages=(Message("user", "hi"),))
    route, body = oa.request_body(req, "m")
    assert route == "/v1/chat/completions"
    back = oa.chat_request(oa.parse_body(oa.ChatBody, body), request_id="q", default_max_tokens=1)
    assert (back.sampling, back.seed, back.messages) == (req.sampling, req.seed, req.messages)
    gen = oa.generation_from_response(req, oa.chat_response(
        Generation("q", ("a", "b"), 5, (3, 4), ("stop", "length")), response_id="c", model_id="m"))
    assert gen.texts == ("a", "b") and gen.prompt_tokens == 5 and sum(gen.output_tokens) == 7


# -- the batcher (a plain function stands in for the engine; the engine runs below) -----------


def _echo_batches(log: list[list[str]]):
    def run(reqs: list[GenerationRequest]) -> list[Generation | BaseException]:
        assert threading.current_thread() is not threading.main_thread()  # never on the loop
        log.append([r.request_id for r in reqs])
        time.sleep(0.02)
        return [ValueError(f"bad {r.request_id}") if r.prompt == "bad" else
                Generation(r.request_id, (r.prompt.upper(),) * r.sampling.n, 1, (1,) * r.sampling.n, ("stop",) * r.sampling.n)
                for r in reqs]
    return run


@pytest.mark.parametrize("text", ["", "Paris", " Paris is\n the capital.  ", "a  b\tc\n\n", "   "])
def test_stream_deltas_concatenate_to_the_text(text):
    pieces = oa.stream_deltas(text)
    assert "".join(pieces) == text
    assert all(pieces) and (len(pieces) <= 1 or len(pieces) >= len(text.split()))


def test_chat_chunks_follow_openai_stream_format():
    gen = Generation("r", ("Hello there", "Hi"), prompt_tokens=5, output_tokens=(2, 1), finish_reasons=("stop", "length"))
    chunks = oa.chat_chunks(gen, response_id="chatcmpl-1", model_id="m", include_usage=True, created=7)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and {c["id"] for c in chunks} == {"chatcmpl-1"}
    by_choice: dict[int, list] = {}
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        by_choice.setdefault(choice["index"], []).append(choice)
    for index, text, reason in [(0, "Hello there", "stop"), (1, "Hi", "length")]:
        choices = by_choice[index]
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["delta"].get("content", "") for c in choices) == text
        assert [c["finish_reason"] for c in choices] == [None] * (len(choices) - 1) + [reason]
        assert choices[-1]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3,
                                                                   "total_tokens": 8}
    assert "usage" not in oa.chat_chunks(gen, response_id="x", model_id="m")[-1]


def test_completion_chunks_and_server_sent_events():
    gens = [Generation("r-0", ("one two",), prompt_tokens=2, output_tokens=(2,), finish_reasons=("length",)),
            Generation("r-1", ("three",), prompt_tokens=1, output_tokens=(1,), finish_reasons=("stop",))]
    chunks = oa.completion_chunks(gens, response_id="cmpl-1", model_id="m")
    texts: dict[int, str] = {}
    for c in chunks:
        (choice,) = c["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: "one two", 1: "three"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["length", "stop"]
    events = list(oa.sse_events(chunks))
    assert events[-1] == "data: [DONE]\n\n" and all(e.startswith("data: {") and e.endswith("\n\n") for e in events[:-1])
    import json as _json

    assert [_json.loads(e.removeprefix("data: ")) for e in events[:-1]] == chunks


def test_bearer_token_check():
    digest = oa.token_digest("s3cret")
    assert digest != "s3cret" and len(digest) == 64
    oa.check_bearer(None, None)  # no token configured: anything goes
    oa.check_bearer("Bearer s3cret", digest)
    oa.check_bearer("bearer  s3cret ", digest)
    for header, why in [(None, "missing"), ("", "missing"), ("s3cret", "missing"), ("Basic s3cret", "missing"),
                        ("Bearer wrong", "incorrect"), ("Bearer s3cret2", "incorrect")]:
        with pytest.raises(oa.OpenAIError, match=why) as info:
            oa.check_bearer(header, digest)
        assert info.value.status == 401 and info.value.code == "invalid_api_key"
        assert "s3cret" not in info.value.message


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True),
                                                ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                                ("10.1.2.3", False), ("example.org", False)])
def test_loopback_hosts(host, loopback):
    from trustray.cli.serve import is_loopback

    assert is_loopback(host) is loopback


def test_batcher_groups_concurrent_callers_up_to_max_rows():
    log: list[list[str]] = []
    batcher = DynamicBatcher(_echo_batches(log), max_batch_rows=4, batch_wait_timeout_s=0.05)
    sampled = SamplingParams(temperature=1.0, n=3)
    reqs = [GenerationRequest(f"r{i}", prompt=f"p{i}") for i in range(6)] + [
        GenerationRequest("n3", sampled, prompt="q"), GenerationRequest("bad", prompt="bad")]

    async def main():
        return await asyncio.gather(*(batcher.submit(r) for r in reqs), return_exceptions=True)

    out = asyncio.run(main())
    assert [o.texts for o in out[:6]] == [(f"P{i}",) for i in range(6)]
    assert out[6].texts == ("Q", "Q", "Q")
    assert isinstance(out[7], ValueError) and "bad bad" in str(out[7])
    rows = {r.request_id: r.sampling.n for r in reqs}
    assert sorted(sum(log, [])) == sorted(rows)  # every request exactly once
    assert all(sum(rows[i] for i in batch) <= 4 for batch in log)
    assert max(len(b) for b in log) == 4  # concurrent callers shared engine calls


@pytest.mark.parametrize(("fill_rows", "expected"), [(4, [4]), (None, [1, 3])])
def test_batcher_waits_to_fill_a_padded_pass(fill_rows, expected):
    log: list[list[str]] = []
    batcher = DynamicBatcher(_echo_batches(log), max_batch_rows=8, batch_wait_timeout_s=0.01,
                             fill_rows=fill_rows, fill_wait_s=2.0)

    async def main():
        first = asyncio.ensure_future(batcher.submit(GenerationRequest("a", prompt="a")))
        await asyncio.sleep(0.2)  # a straggling burst: well past the 10 ms window
        rest = [batcher.submit(GenerationRequest(x, prompt=x)) for x in "bcd"]
        return await asyncio.gather(first, *rest)

    assert [g.texts[0] for g in asyncio.run(main())] == ["A", "B", "C", "D"]
    assert [len(b) for b in log] == expected


def test_batcher_skips_cancelled_callers():
    log: list[list[str]] = []
    batcher = DynamicBatcher(_echo_batches(log), max_batch_rows=8, batch_wait_timeout_s=0.05)

    async def main():
        doomed = asyncio.ensure_future(batcher.submit(GenerationRequest("gone", prompt="x")))
        kept = asyncio.ensure_future(batcher.submit(GenerationRequest("kept", prompt="y")))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    assert asyncio.run(main()).texts == ("Y",)
    assert log == [["kept"]]


# -- ModelServer on the real engine (no Ray) ---------------------------------------------------


@pytest.fixture(scope="module")
def engine(embedded_model):
    import torch

    from trustray.engines.hf import EngineOptions, HFEngine

    # One thread, like the Serve replica (Ray sets OMP_NUM_THREADS to its num_cpus=1): on a
    # busy 2-core box two spinning OpenMP threads per process are several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield HFEngine(embedded_model, EngineOptions(batch_size=8))
    finally:
        torch.set_num_threads(threads)


def _chat_requests(k: int, max_tokens: int = 3) -> list[GenerationRequest]:
    topics = ["the sea", "a cat", "rain", "trains", "bread", "music", "snow", "the moon"]
    return [
        GenerationRequest(f"q{i}", SamplingParams(max_tokens=max_tokens),
                          messages=(Message("user", f"Say something about {topics[i % len(topics)]}{'!' * (i // 8)}"),))
        for i in range(k)
    ]


@pytest.mark.slow
def test_model_server_batches_and_matches_the_engine(engine):
    server = ModelServer(engine, batch_wait_timeout_s=0.05)
    reqs = _chat_requests(12)
    too_long = GenerationRequest("long", SamplingParams(max_tokens=2), prompt="word " * (engine.context_length + 10))

    async def main():
        return await asyncio.gather(*(server.generate(r) for r in [*reqs, too_long]), return_exceptions=True)

    out = asyncio.run(main())
    assert isinstance(out[-1], ValueError) and "exceeds the model's context" in str(out[-1])
    direct = engine.generate(reqs)
    assert [g.texts for g in out[:-1]] == [g.texts for g in direct]
    assert server.stats()["max_batch_requests"] > 1


@pytest.mark.slow
def test_model_server_openai_routes(engine):
    server = ModelServer(engine, model_id="tiny-chat")
    body = {"model": "tiny-chat", "prompt": "The weather today is", "n": 2, "seed": 5, "temperature": 0.9,
            "max_tokens": 4}
    first, again = asyncio.run(server.completions(body)), asyncio.run(server.completions(body))
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]
    direct = engine.generate([GenerationRequest("d", SamplingParams(temperature=0.9, top_k=0, max_tokens=4, n=2), seed=5,
                                                prompt="The weather today is")])[0]
    assert tuple(c["text"] for c in first["choices"]) == direct.texts
    assert first["usage"]["completion_tokens"] == sum(direct.output_tokens)
    with pytest.raises(oa.OpenAIError) as info:
        asyncio.run(server.chat_completions({"model": "other", "messages": [{"role": "user", "content": "x"}]}))
    assert info.value.status == 404 and "tiny-chat" in info.value.message
    assert server.models()["data"][0]["id"] == "tiny-chat"


# -- the Serve app on a local Ray: handle and HTTP ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN = "test-" + __import__("secrets").token_hex(8)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(embedded_model):
    """One local Ray, one Serve instance (HTTP on a free loopback port), one model app that
    requires the bearer token ``TOKEN``."""
    import ray
    from ray import serve

    from trustray.engines.hf import EngineOptions
    from trustray.serve import ServingOptions, build_model_app

    temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    port = _free_port()
    app_name = "serve-test-smollm2"
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_model_app(
            embedded_model, engine_options=EngineOptions(batch_size=8), backend="hf", name="smol",
            num_cpus=1, serving=ServingOptions(batch_wait_timeout_s=0.05), token_sha256=oa.token_digest(TOKEN),
        )
        serve.run(app, name=app_name, route_prefix="/", blocking=False)
        yield app_name, f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.delete(app_name)
            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.mark.slow
def test_handle_batches_concurrent_requests_and_matches_the_engine(served, engine):
    from trustray.serve import model_handle

    app_name, _ = served
    handle = model_handle(app_name)
    reqs = _chat_requests(24)
    responses = [handle.generate.remote(r) for r in reqs]
    out = [r.result(timeout_s=300) for r in responses]
    assert [g.request_id for g in out] == [r.request_id for r in reqs]
    assert [g.texts for g in out] == [g.texts for g in engine.generate(reqs)]
    stats = handle.stats.remote().result(timeout_s=30)
    assert stats["requests"] >= 24 and stats["max_batch_requests"] > 1
    with pytest.raises(ValueError, match="no Serve application named 'nope'"):
        model_handle("nope")


@pytest.mark.slow
def test_http_chat_and_completions(served, engine):
    import httpx

    _, url = served
    with httpx.Client(base_url=url, timeout=300, headers=AUTH) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/v1/models").json()["data"][0]["id"] == "smol"

        chat = {"model": "smol", "messages": [{"role": "user", "content": "Name a colour."}], "n": 2, "seed": 3,
                "temperature": 0.8, "max_tokens": 4}
        a, b = client.post("/v1/chat/completions", json=chat), client.post("/v1/chat/completions", json=chat)
        assert a.status_code == 200, a.text
        texts = [c["message"]["content"] for c in a.json()["choices"]]
        assert len(texts) == 2 and texts == [c["message"]["content"] for c in b.json()["choices"]]
        assert a.json()["usage"]["total_tokens"] == a.json()["usage"]["prompt_tokens"] + a.json()["usage"]["completion_tokens"]

        comp = {"model": "smol", "prompt": "Once upon a time", "n": 2, "seed": 9, "temperature": 1.0, "max_tokens": 5}
        r = client.post("/v1/completions", json=comp).json()
        direct = engine.generate([GenerationRequest("d", SamplingParams(temperature=1.0, top_k=0, max_tokens=5, n=2), seed=9,
                                                    prompt="Once upon a time")])[0]
        assert tuple(c["text"] for c in r["choices"]) == direct.texts

        greedy = {"model": "smol", "prompt": "The capital of France is", "temperature": 0, "max_tokens": 8}
        full = client.post("/v1/completions", json=greedy).json()["choices"][0]["text"]
        stop = full.strip().split()[1] if len(full.split()) > 1 else full[2:4]
        cut = client.post("/v1/completions", json={**greedy, "stop": [stop]}).json()["choices"][0]
        assert cut["text"] == full[: full.index(stop)] and cut["finish_reason"] == "stop"

        bad = client.post("/v1/completions", json={"prompt": "x", "temprature": 1})
        assert bad.status_code == 400 and "temprature: unknown field" in bad.json()["error"]["message"]
        bad = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "n": 2,
                                                        "temperature": 0})
        assert bad.status_code == 400 and "n > 1 needs temperature > 0" in bad.json()["error"]["message"]
        bad = client.post("/v1/completions", content=b"{oops", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
        bad = client.post("/v1/completions", json={"model": "gpt-4", "prompt": "x"})
        assert bad.status_code == 404 and "smol" in bad.json()["error"]["message"]


@pytest.mark.slow
def test_openai_http_handle_matches_the_engine(served, engine):
    from trustray.serve import OpenAIHTTPHandle

    _, url = served
    handle = OpenAIHTTPHandle(url, token=TOKEN)
    reqs = _chat_requests(3) + [GenerationRequest("p", SamplingParams(max_tokens=3), prompt="Two plus two is")]

    async def main():
        try:
            return await asyncio.gather(*(handle.generate.remote(r) for r in reqs))
        finally:
            await handle.aclose()

    out = asyncio.run(main())
    direct = engine.generate(reqs)
    assert [g.texts for g in out] == [g.texts for g in direct]
    assert [g.prompt_tokens for g in out] == [g.prompt_tokens for g in direct]
    assert handle.generate.remote(reqs[-1]).result().texts == direct[-1].texts


@pytest.mark.slow
def test_every_route_needs_the_token(served):
    import httpx

    _, url = served
    routes = [("GET", "/health", None), ("GET", "/v1/models", None),
              ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1}),
              ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1})]
    with httpx.Client(base_url=url, timeout=300) as client:
        for method, route, body in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = client.request(method, route, json=body, headers=headers)
                assert r.status_code == 401, (route, headers, r.text)
                assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
            assert client.request(method, route, json=body, headers=AUTH).status_code == 200, route


def _openai_client(url: str, token: str = TOKEN):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=300)


@pytest.mark.slow
def test_openai_client_lists_chats_and_completes(served, engine):
    _, url = served
    client = _openai_client(url)
    assert [m.id for m in client.models.list()] == ["smol"]

    messages = [{"role": "user", "content": "Name a colour."}]
    a = client.chat.completions.create(model="smol", messages=messages, n=2, seed=3, temperature=0.8, max_tokens=4)
    b = client.chat.completions.create(model="smol", messages=messages, n=2, seed=3, temperature=0.8, max_tokens=4)
    assert len(a.choices) == 2 and [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens

    comp = client.completions.create(model="smol", prompt="Once upon a time", n=2, seed=9, temperature=1.0,
                                     max_tokens=5)
    direct = engine.generate([GenerationRequest("d", SamplingParams(temperature=1.0, top_k=0, max_tokens=5, n=2), seed=9,
                                                prompt="Once upon a time")])[0]
    assert tuple(c.text for c in sorted(comp.choices, key=lambda c: c.index)) == direct.texts


@pytest.mark.slow
def test_openai_client_streams_what_it_would_get_whole(served):
    _, url = served
    client = _openai_client(url)
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    whole = client.chat.completions.create(model="smol", messages=messages, temperature=0, max_tokens=24)
    stream = client.chat.completions.create(model="smol", messages=messages, temperature=0, max_tokens=24,
                                            stream=True, stream_options={"include_usage": True})
    deltas, finish, used = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            used = chunk.usage
        for choice in chunk.choices:
            deltas.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([d for d in deltas if d]) > 1
    assert "".join(deltas) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert used is not None and used.completion_tokens == whole.usage.completion_tokens

    prompt = "The three primary colours are"
    text = client.completions.create(model="smol", prompt=prompt, temperature=0, max_tokens=12).choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smol", prompt=prompt, temperature=0, max_tokens=12, stream=True) if c.choices)
    assert streamed == text


@pytest.mark.slow
def test_openai_client_raises_typed_errors(served):
    openai = pytest.importorskip("openai")
    _, url = served
    client = _openai_client(url)
    with pytest.raises(openai.BadRequestError, match="n > 1 needs temperature > 0"):
        client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "x"}], n=2, temperature=0)
    with pytest.raises(openai.NotFoundError, match="smol"):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=1)
    with pytest.raises(openai.AuthenticationError, match="incorrect bearer token"):
        _openai_client(url, token="wrong").models.list()


# -- builder: backend choice and the vLLM guard ----------------------------------------------------


def test_backend_choice_and_unknown_inputs(tiny_checkpoint):
    from trustray.models import ModelError
    from trustray.serve import build_model_app, resolve_backend
    from trustray.serve.builder import vllm_available

    assert resolve_backend("hf") == "hf"
    if not vllm_available():
        assert resolve_backend("auto") == "hf"
    with pytest.raises(ValueError, match="unknown serving backend 'tgi'"):
        resolve_backend("tgi")
    with pytest.raises(ModelError, match="did you mean"):
        build_model_app("smollm2-135n", backend="hf")
    with pytest.raises(ValueError, match="num_cpus"):
        build_model_app(tiny_checkpoint, backend="hf", num_cpus=-1)


def test_vllm_backend_without_vllm_says_what_to_install(tiny_checkpoint):
    from trustray.serve import build_model_app
    from trustray.serve.builder import vllm_available
    from trustray.serve.llm_builder import VLLMUnavailableError

    if vllm_available():
        pytest.skip("vLLM is installed here")
    with pytest.raises(VLLMUnavailableError, match=r"ray\[llm\]"):
        build_model_app(tiny_checkpoint, backend="vllm", name="tiny")


@pytest.mark.slow
def test_vllm_backend_builds_an_openai_app(tiny_checkpoint):
    """build_model_app(backend="vllm") where vLLM is installed (the vLLM venv)."""
    import os

    from test_vllm_serving import run_in_vllm_venv

    code = (
        "import sys\n"
        "from ray.serve import Application\n"
        "from trustray.serve import build_model_app\n"
        "from trustray.serve.llm_builder import VLLMReplica\n"
        "app = build_model_app(sys.argv[1], backend='vllm', name='tiny',\n"
        "                      vllm_options={'max_model_len': 128, 'replica': VLLMReplica(accelerator='cpu')})\n"
        "assert isinstance(app, Application)\n"
        "print('ok')\n"
    )
    run_in_vllm_venv(code, str(tiny_checkpoint))


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_serve_unknown_model_fails_clearly():
    proc = subprocess.run(
        [sys.executable, "-c", "from trustray.cli import main; main()", "serve", "--model", "smollm2-135n",
         "--port", str(_free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "smollm2-135n" in proc.stderr and "smollm2-135m" in proc.stderr  # did-you-mean
    assert "Traceback" not in proc.stderr


def test_cli_serve_on_a_public_host_needs_a_token():
    import os

    env = {k: v for k, v in os.environ.items() if k != "TRUSTRAY_API_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-c", "from trustray.cli import main; main()", "serve", "--model", "smollm2-135m",
         "--host", "0.0.0.0", "--port", str(_free_port())],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "TRUSTRAY_API_TOKEN" in lines[0] and "0.0.0.0" in lines[0], proc.stderr


def test_merge_stats_sums_counters_and_keeps_the_busiest_replica():
    from trustray.serve.server import merge_stats

    a = {"model": "m", "engine_version": "v", "batches": 3, "requests": 30, "rows": 60, "max_batch_requests": 12,
         "mean_batch_requests": 10.0, "engine_busy_s": 4.0, "batch_sizes": [10, 10, 10], "replica": "a",
         "torch_threads": 1}
    b = {**a, "batches": 1, "requests": 6, "rows": 6, "max_batch_requests": 6, "engine_busy_s": 1.5,
         "batch_sizes": [6], "replica": "b"}
    m = merge_stats([a, b])
    assert (m["batches"], m["requests"], m["rows"], m["max_batch_requests"]) == (4, 36, 66, 12)
    assert m["engine_busy_s"] == 5.5 and m["engine_busy_max_s"] == 4.0 and m["replicas"] == 2
    assert m["mean_batch_requests"] == 9.0 and m["engine_version"] == "v" and m["torch_threads"] == 1
    assert "batch_sizes" not in m and "replica" not in m
    assert merge_stats([]) == {}
