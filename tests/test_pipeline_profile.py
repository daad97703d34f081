"""python -m bench.pipeline_profile: the tables from hand-written run directories, the BENCHMARKS.md section,
and (slow) one tiny --run of the whole pipeline."""

import json

import pytest

from bench import pipeline_profile as profile


def write_run(path, name: str, record: dict):
    path.mkdir(parents=True)
    (path / name).write_text(json.dumps(record))
    return path


@pytest.fixture
def runs(tmp_path):
    rm = write_run(
        tmp_path / "rm",
        "summary.json",
        {
            "algo": "rm",
            "wall_time_s": 10.0,
            "peak_rss_mb": 900.0,
            "phase_seconds": {"setup": 2.0, "training": 6.0, "other": 2.0},
            "tokens_forwarded": 1200,
            "tokens_backpropagated": 1200,
            "episodes": 16,
        },
    )
    evaluation = write_run(
        tmp_path / "evaluate",
        "results.json",
        {"wall_time_s": 5.0, "peak_rss_mb": 700.0, "phase_seconds": {"generation": 3.0, "report": 1.0, "other": 1.0}},
    )
    return rm, evaluation


def test_stages_read_from_run_directories(runs):
    rm, evaluation = runs
    stage = profile.read_stage(rm, process_seconds=12.0)  # timed from outside: 2 s of startup
    assert (stage.name, stage.seconds, stage.tokens_forwarded, stage.episodes) == ("rm", 12.0, 1200, 16)
    assert stage.phases == {"startup": 2.0, "setup": 2.0, "training": 6.0, "other": 2.0}
    stage = profile.read_stage(evaluation)
    assert (stage.name, stage.seconds, stage.tokens_forwarded) == ("evaluate", 5.0, None)


def test_tables_give_shares_of_the_stage_and_the_pipeline(runs):
    rm, evaluation = runs
    stages = [profile.read_stage(rm, process_seconds=12.0), profile.read_stage(evaluation)]  # 17 s in all
    lines = profile.phase_table(stages).splitlines()
    assert lines[0] == "| stage | phase | s | share of stage | share of pipeline |"
    assert lines[2] == "| rm | training | 6.0 | 50.0% | 35.3% |"  # 6 / 12, 6 / 17; largest first
    assert "| **rm** | **all** | **12.0** | 100% | 70.6% |" in lines
    assert "| evaluate | generation | 3.0 | 60.0% | 17.6% |" in lines
    assert lines[-1] == "| **pipeline** |  | **17.0** |  | 100% |"
    costs = profile.cost_table(stages).splitlines()
    assert costs[2] == "| rm | 12.0 | 1200 | 1200 | 16 | 100 | 900.0 |"  # 1200 tokens / 12 s
    assert costs[3] == "| evaluate | 5.0 | - | - | - | - | 700.0 |"


def test_a_run_without_phase_seconds_is_refused(tmp_path):
    old = write_run(tmp_path / "old", "summary.json", {"algo": "dpo", "wall_time_s": 3.0})
    with pytest.raises(SystemExit, match="no phase_seconds"):
        profile.read_stage(old)


def test_the_section_is_appended_then_replaced_in_place(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Results\n\nold numbers\n")
    profile.write_section("## Pipeline profile\n\nfirst\n", path)
    path.write_text(path.read_text() + "\n## Memory planner\n\nkept\n")
    profile.write_section("## Pipeline profile\n\nsecond\n", path)
    assert path.read_text() == (
        "# Benchmarks\n\n## Results\n\nold numbers\n\n## Pipeline profile\n\nsecond\n\n## Memory planner\n\nkept\n"
    )


def test_dirs_with_write_names_the_command_and_machine(runs, tmp_path, monkeypatch, capsys):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n")
    monkeypatch.setattr(profile, "BENCHMARKS", path)
    rm, evaluation = runs
    profile.main(["--dirs", str(rm), str(evaluation), "--write"])
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\n## Pipeline profile\n\n`python -m bench.pipeline_profile --dirs ")
    assert "cores, torch threads" in text and "0.2 min in all" in text  # the machine; 15 s
    assert "| **pipeline** |  | **15.0** |  | 100% |" in text and capsys.readouterr().out.startswith("## Pipeline")


@pytest.mark.slow
def test_run_times_the_tiny_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(profile.common, "RESULTS", tmp_path / "results")
    stages = profile.main(["--run", "debug=tiny", "--eval-arg", "debug=tiny", "--root", str(tmp_path / "runs")])
    assert [stage.name for stage in stages] == ["rm", "dpo", "ppo", "evaluate"]
    for stage in stages:
        assert stage.phases["startup"] > 0 and sum(stage.phases.values()) == pytest.approx(stage.seconds, abs=0.1)
    latest = tmp_path / "runs" / "outputs" / "latest"  # the runs' own outputs root, not the repository's
    assert all((latest / algo).exists() for algo in ("rm", "dpo", "ppo"))
    assert list((tmp_path / "results").glob("*.json"))  # the pipeline_profile section
