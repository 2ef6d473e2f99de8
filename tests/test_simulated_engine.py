"""The simulated engine (scale tests only): deterministic answers, modelled latency, and a report
that refuses to mix its rows with real ones."""

from __future__ import annotations

import time

import pytest

from trustray.engines.simulated import SimulatedEngine, SimulatedOptions, ThroughputModel, estimate_tokens
from trustray.generation import GenerationRequest, Message, SamplingParams


def _requests(k: int, n: int = 1) -> list[GenerationRequest]:
    sampling = SamplingParams(temperature=0.7 if n > 1 else 0.0, max_tokens=8, n=n)
    return [GenerationRequest(f"r{i}", sampling, seed=i, messages=(Message("user", f"question {i} " * 20),))
            for i in range(k)]


def test_answers_depend_on_the_request_alone():
    engine = SimulatedEngine(options=SimulatedOptions(time_scale=1e-6))
    reqs = _requests(6, n=3)
    whole = engine.generate(reqs)
    alone = [engine.generate([r])[0] for r in reversed(reqs)][::-1]
    assert [g.texts for g in whole] == [g.texts for g in alone]
    assert all(len(g.texts) == 3 and all(g.texts) for g in whole)
    assert len({g.texts for g in whole}) > 1  # not one canned reply
    assert all(t <= 8 for g in whole for t in g.output_tokens)
    assert engine.name == "simulated" and engine.version == "simulated/A100/13B/x1e-06"


def test_throughput_model_rates_and_sources():
    a100, h100 = ThroughputModel("A100"), ThroughputModel("H100")
    assert a100.decode_tok_s == 3000 and h100.decode_tok_s == 6000
    assert a100.prefill_tok_s == pytest.approx(0.4 * 312e12 / 26e9)
    assert a100.seconds(0, 3000) == pytest.approx(1.0)
    assert ThroughputModel("A100", params_b=6.5).seconds(0, 3000) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown simulated GPU 'T4'"):
        ThroughputModel("T4")
    with pytest.raises(ValueError, match="time_scale"):
        SimulatedOptions(time_scale=0)


def test_latency_follows_the_model_and_the_time_scale():
    reqs = _requests(4)
    engine = SimulatedEngine(options=SimulatedOptions(params_b=13.0, time_scale=0.5))
    start = time.perf_counter()
    out = engine.generate(reqs)
    elapsed = time.perf_counter() - start
    prompt = sum(g.prompt_tokens for g in out)
    output = sum(sum(g.output_tokens) for g in out)
    modelled = ThroughputModel().seconds(prompt, output)
    assert engine.modelled_gpu_s == pytest.approx(modelled)
    assert prompt == sum(estimate_tokens(f"user: {r.messages[0].content}") for r in reqs)
    assert 0.5 * modelled <= elapsed < 0.5 * modelled + 0.5


def test_simulated_backend_is_never_a_default_and_has_no_perplexity():
    from trustray.config import EngineSpec, EvalSpec, TrialSpec

    assert EngineSpec().backend != "simulated"
    with pytest.raises(ValueError, match="perplexity"):
        TrialSpec(engine=EngineSpec(backend="simulated"))
    trial = TrialSpec(engine=EngineSpec(backend="simulated", simulated_gpu="H100", simulated_time_scale=0.01),
                      eval=EvalSpec(perplexity=False))
    from trustray.stages import engine_options

    assert engine_options(trial.engine) == SimulatedOptions(gpu="H100", params_b=13.0, time_scale=0.01)


def test_report_refuses_to_mix_simulated_and_real_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trustray.report.store import ReportError, read_results
    from trustray.schema import RESULT_SCHEMA, SCHEMA_VERSION

    def write(config: str, engine: str) -> None:
        row = {f.name: None for f in RESULT_SCHEMA}
        row.update(schema_version=SCHEMA_VERSION, run_id="r", config_id=config, model_name="m", model_fingerprint="f",
                   method="none", profile="smoke", render_mode="chat_template", engine_name=engine, engine_version="v",
                   perspective="mmlu", scenario="s", item_id=f"{config}/1", generation_index=0, prompt_hash="h",
                   seed=0, temperature=0.0, top_p=1.0, top_k=0, max_tokens=1, n=1, output_text="A", refused=False)
        for f in RESULT_SCHEMA:
            if not f.nullable and row[f.name] is None:
                row[f.name] = False if f.type == pa.bool_() else ("x" if f.type == pa.string() else 0)
        path = tmp_path / "results" / f"config={config}" / "perspective=mmlu" / "shard-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([row], schema=RESULT_SCHEMA), path)

    write("a", "simulated")
    assert set(read_results(tmp_path)["engine_name"]) == {"simulated"}
    write("b", "hf")
    with pytest.raises(ReportError, match="mix the simulated engine"):
        read_results(tmp_path)
