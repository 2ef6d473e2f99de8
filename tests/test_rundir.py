"""The run layout: every path a run reads or writes, as old runs have it on disk."""

from __future__ import annotations

from trustray.evaluate.plan import Shard, plan_path
from trustray.evaluate.store import shard_path
from trustray.rundir import RunDir


def test_layout_is_the_one_old_runs_have(tmp_path):
    run = RunDir(tmp_path)
    assert run.sweep_record == tmp_path / "sweep.json"
    assert run.eval_record == tmp_path / "eval.json"
    assert run.config_record("abc") == tmp_path / "configs" / "abc.json"
    assert run.shard("abc", "toxicity", "shard-00003") == (
        tmp_path / "results" / "config=abc" / "perspective=toxicity" / "shard-00003.parquet"
    )
    assert run.plan("abc", "toxicity") == tmp_path / "results" / "config=abc" / "perspective=toxicity" / "_plan.json"
    assert run.perplexity("abc") == tmp_path / "utility" / "config=abc" / "perplexity.parquet"
    assert run.tune == tmp_path / "tune"
    assert run.report_files().summary_csv == tmp_path / "report" / "summary.csv"
    assert run.report_files(tmp_path / "out").html == tmp_path / "out" / "report.html"
    assert RunDir.under(tmp_path, "sweep-1") == RunDir(tmp_path.resolve() / "sweep-1")


def test_store_and_plan_paths_come_from_the_run_dir(tmp_path):
    shard = Shard("abc", "ood", 2, 0, 4)
    assert shard_path(tmp_path, shard) == RunDir(tmp_path).shard("abc", "ood", "shard-00002")
    assert plan_path(tmp_path, "abc", "ood") == RunDir(tmp_path).plan("abc", "ood")


def test_finds_committed_shards_and_not_temp_files(tmp_path):
    run = RunDir(tmp_path)
    for config_id, p in [("a", "ood"), ("a", "mmlu"), ("b", "ood")]:
        path = run.shard(config_id, p, "shard-00000")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (run.perspective_results("a", "ood") / ".shard-00001.parquet.x.tmp").write_bytes(b"")
    run.plan("a", "ood").write_text("{}")
    assert len(run.shard_files()) == 3
    assert [RunDir.perspective_of(p) for p in run.shard_files("a")] == ["mmlu", "ood"]
    assert run.result_config_ids() == ["a", "b"]
