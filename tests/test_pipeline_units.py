"""Pure pieces of the pipeline: specs, shard plans, the atomic shard store."""

from __future__ import annotations

import pyarrow as pa
import pytest

from trustray.benchmarks.base import Item
from trustray.config import SpecError, SweepSpec, load_sweep_spec
from trustray.evaluate.plan import Shard, plan_shards
from trustray.evaluate.store import read_config_rows, shard_path, write_table_atomic
from trustray.schema import RESULT_SCHEMA


def items(n: int) -> list[Item]:
    return [Item(item_id=f"p/s/f/{i}", perspective="p", scenario="s", payload={}) for i in range(n)]


def test_shards_cover_every_item_once_and_are_stable():
    its = items(10)
    gens = [1, 1, 2, 5, 1, 1, 1, 1, 3, 1]
    shards = plan_shards("cfg", "p", its, gens, target=4)
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 4), (4, 8), (8, 10)]
    assert shards == plan_shards("cfg", "p", its, gens, target=4)
    assert [s.name for s in shards] == ["shard-00000", "shard-00001", "shard-00002", "shard-00003"]
    with pytest.raises(ValueError, match="shard target"):
        plan_shards("cfg", "p", its, gens, target=0)


def test_atomic_store_never_rewrites_and_hides_temp_files(tmp_path):
    shard = Shard("cfg", "fairness", 0, 0, 1)
    path = shard_path(tmp_path, shard)
    assert path == tmp_path / "results" / "config=cfg" / "perspective=fairness" / "shard-00000.parquet"
    table = pa.table({"x": [1, 2]})
    assert write_table_atomic(table, path)
    assert not write_table_atomic(pa.table({"x": [3]}), path)  # committed: kept as is
    assert pa.parquet.read_table(path)["x"].to_pylist() == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["shard-00000.parquet"]
    assert write_table_atomic(pa.table({"x": [3]}), path, replace=True)  # asked to: written over
    assert pa.parquet.read_table(path)["x"].to_pylist() == [3]
    assert [p.name for p in path.parent.iterdir()] == ["shard-00000.parquet"]
    # a leftover temp file from a crashed writer is invisible to readers
    (path.parent / ".shard-00001.parquet.dead.tmp").write_bytes(b"partial")
    assert read_config_rows(tmp_path, "missing").num_rows == 0


def test_sweep_trials_expand_seeds_only_where_calibration_is_read():
    spec = SweepSpec(
        compressions=[{"method": "none"}, {"method": "gptq", "bits": 4}, {"method": "magnitude", "sparsity": 0.5}],
        seeds=[0, 1],
    )
    labels = [t.label() for t in spec.trials()]
    assert labels == ["dense", "gptq-w4-seed0", "gptq-w4-seed1", "magnitude-s0.5"]
    assert spec.with_overrides(**{"eval.profile": "smoke"}).eval.profile == "smoke"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nbogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("eval: {perspectives: [toxicty]}\n", "did you mean 'toxicity'"),
        ("compressions: [{method: gptqq, bits: 4}]\n", "compressions.0.method"),
        ("compressions: [{method: awq, bits: 2}]\n", "compressions.0.bits"),
        ("compressions: [{method: wanda, structure: '3:2'}]\n", "compressions.0"),
        ("seeds: []\n", "at least one calibration seed"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a list\n", "a sweep spec is a mapping"),
        ("eval: {dt_reference: paper}\n", "eval.dt_reference: Input should be 'fork' or 'upstream'"),
    ],
)
def test_bad_sweep_specs_fail_naming_the_field(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_sweep_spec(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_dt_reference_defaults_to_the_fork_and_reaches_the_context(tmp_path):
    from trustray.pipeline import eval_context

    assert SweepSpec().eval.dt_reference == "fork"
    path = tmp_path / "spec.yaml"
    path.write_text("eval: {dt_reference: upstream}\n")
    trial = load_sweep_spec(path).trials()[0]
    assert eval_context(trial).dt_reference == "upstream"


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_sweep_spec(tmp_path / "nope.yaml")


def test_shipped_sweep_specs_load():
    for name in ("bits", "prune", "seed_variance"):
        from pathlib import Path

        spec = load_sweep_spec(Path(__file__).parents[1] / "sweeps" / f"{name}.yaml")
        assert spec.trials()
    assert RESULT_SCHEMA.field("config_id").nullable is False


def test_shipped_sweep_specs_load_and_the_laptop_one_fits_two_cpus():
    from pathlib import Path

    specs = {p.name: load_sweep_spec(p) for p in sorted((Path(__file__).parents[1] / "sweeps").glob("*.yaml"))}
    assert {"bits.yaml", "bits_laptop.yaml", "prune.yaml", "seed_variance.yaml"} <= set(specs)
    assert all(s.trials() for s in specs.values())
    laptop = specs["bits_laptop.yaml"]
    # one trial at a time on a CPU box: the trial, its evaluators and every replica at once
    assert laptop.resources.model_replicas == 2 and laptop.resources.cpus_per_trial() <= 2
    assert [t.label() for t in laptop.trials()] == ["dense", "gptq-w4-seed0", "gptq-w3-seed0"]
    # the laptop calibration preset: 1/8 of bits.yaml's calibration tokens
    cal, full = laptop.calibration, specs["bits.yaml"].calibration
    assert (cal.num_samples, cal.seq_len) == (32, 256)
    assert cal.num_samples * cal.seq_len * 8 == full.num_samples * full.seq_len


def test_shards_are_sized_by_work_and_an_older_run_resumes_with_its_own_plan(tmp_path):
    """Plan version 2 cuts by tokens of work; a run whose shards were committed before plan
    files existed keeps its version-1 (generation-sized) boundaries; a recorded plan is reused."""
    import json

    from trustray.evaluate.plan import PLAN_VERSION, PlanMismatch, plan_path, resolve_plan

    its = items(6)
    gens = [1] * 6
    work = [4000, 4000, 100, 100, 100, 100]  # two long few-shot prompts, then short ones

    def resolve(run_dir, w=work, its=its):
        return resolve_plan(run_dir, "cfg", "p", its, lambda: w, lambda: gens, shard_tokens=4000, shard_generations=4)

    new_run, old_run = tmp_path / "new", tmp_path / "old"
    shards, version = resolve(new_run)
    assert version == PLAN_VERSION == 2
    assert [(s.start, s.stop) for s in shards] == [(0, 1), (1, 2), (2, 6)]
    recorded = json.loads(plan_path(new_run, "cfg", "p").read_text())
    assert recorded["version"] == 2 and recorded["shards"] == [[0, 1, 4000], [1, 2, 4000], [2, 6, 400]]
    assert [s.work for s in shards] == [4000, 4000, 400]
    # resuming reuses the recorded boundaries even where the work would now be counted otherwise
    again, v = resolve(new_run, w=[1] * 6)
    assert (again, v) == (shards, 2) and [s.work for s in again] == [4000, 4000, 400]

    # an older run: a committed shard and no plan file → replanned by generations (version 1)
    write_table_atomic(pa.table({"x": [1]}), shard_path(old_run, Shard("cfg", "p", 0, 0, 4)))
    old, version = resolve(old_run)
    assert version == 1 and [(s.start, s.stop, s.work) for s in old] == [(0, 4, 8200), (4, 6, 200)]
    assert json.loads(plan_path(old_run, "cfg", "p").read_text())["version"] == 1
    assert resolve(old_run) == (old, 1)
    assert read_config_rows(old_run, "cfg").num_rows == 1  # the plan file is not read as a shard

    with pytest.raises(PlanMismatch, match="item selection changed"):
        resolve(new_run, its=items(5))


def test_resuming_a_sweep_ignores_the_order_of_its_perspectives(tmp_path):
    """Sweeps recorded with the earlier default order (DecodingTrust's) resume under the registry's."""
    import json

    from trustray.sweep import check_or_record_spec

    spec = SweepSpec(name="s")
    check_or_record_spec(tmp_path, spec)
    record = tmp_path / "sweep.json"
    body = json.loads(record.read_text())
    body["eval"]["perspectives"] = list(reversed(body["eval"]["perspectives"]))
    record.write_text(json.dumps(body))
    check_or_record_spec(tmp_path, spec)  # same perspectives, other order: resumes
    with pytest.raises(SpecError, match="different spec"):
        check_or_record_spec(tmp_path, spec.with_overrides(**{"eval.perspectives": "mmlu,ood"}))


def test_a_perplexity_scored_on_other_windows_than_the_profile_reads_is_stale(tmp_path):
    """A run resumed after a profile's window count changed recomputes its stored perplexity,
    so every config of the run is compared on the same text."""
    from trustray.pipeline import _stored_perplexity
    from trustray.utility.perplexity import MAX_WINDOWS

    def stored(windows: int | None) -> object:
        path = tmp_path / f"ppl-{windows}.parquet"
        cols = {"config_id": ["c"], "perplexity": [16.5]} | ({} if windows is None else {"windows": [windows]})
        write_table_atomic(pa.table(cols), path)
        return path

    quick = MAX_WINDOWS["quick"]
    assert _stored_perplexity(stored(quick), "quick") == 16.5
    assert _stored_perplexity(stored(quick * 2), "quick") is None
    assert _stored_perplexity(stored(None), "quick") is None  # written before windows were recorded
    assert _stored_perplexity(stored(612), "paper") == 16.5  # the whole test set: whatever it holds
    assert _stored_perplexity(tmp_path / "none.parquet", "quick") is None
