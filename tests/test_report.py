"""The sweep report: `make compare` on a tiny real SFT sweep writes report.html with every panel (images that
decode, nothing fetched), ranked in the metric's direction; the W&B Report is built and checked offline."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image

from rlhf.report import wandb_report as report_wandb
from rlhf.report.cli import OFFLINE, main
from rlhf.report.data import find_jobs, find_results, hyperparameters, rank_jobs
from rlhf.report.html import PANELS, render
from tests.conftest import REPO

TINY = ["debug=tiny", "dataset.n_train=16", "dataset.n_test=8", "algo.max_steps=2"]


class Page(HTMLParser):
    """The parts of report.html the tests read: sections, figures and images per section, table rows by id,
    and every external reference (src/href that is not a data URI or an in-page anchor)."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self.tags: set[str] = set()
        self._section = self._table = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith(("data:image/png;base64,", "#")):
                self.external.append(attrs[name])
        if tag == "section":
            self._section = self.sections.setdefault(attrs["id"], {"figures": [], "images": [], "tables": []})
        elif tag == "figure" and self._section is not None:
            self._section["figures"].append(attrs["id"])
        elif tag == "img" and self._section is not None:
            self._section["images"].append(attrs["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table-{len(self.tables)}"), [])
            if self._section is not None:
                self._section["tables"].append(attrs.get("id"))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._table is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def png_bytes() -> bytes:
    fig = Figure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def interval(mean: float, width: float = 0.1) -> dict:
    return {"mean": mean, "low": mean - width, "high": mean + width, "n": 8}


def fake_results(folder: Path) -> Path:
    """An evaluate.py results.json (its structure, made-up numbers) with one plot beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reward_vs_kl.png").write_bytes(png_bytes())
    policy = {"reference": "base", "run_dir": None, "length": 7.5, "eos_rate": 0.25, "distinct_2": 0.6}
    results = {
        "policies": {
            "base": {**policy, "algo": "base", "avg_reward": interval(0.1), "kl": interval(0.0, 0.0)},
            "dpo": {
                **policy,
                "algo": "dpo",
                "avg_reward": interval(0.4),
                "kl": {**interval(1.5), "negative_share": 0.0, "max": 2.0},
                "win_rate_vs_base_rm": interval(0.625),
                "accuracy": 0.75,
                "reward_hacking": False,
            },
        },
        "base": "base",
        "chosen": {"avg_reward": interval(0.3)},
        "dataset": {"name": "hh_synthetic", "prompts": 8, "pairs": 8},
        "settings": {"confidence": 0.95, "bootstrap_samples": 200},
        "model": "tiny_llama",
        "plots": ["reward_vs_kl.png"],
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder / "results.json"


def decoded(src: str) -> Image.Image:
    """A data-URI PNG, decoded and verified."""
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    image.verify()
    return image


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny SFT sweep over the learning rate (eval_loss: lower is better), an evaluation's results.json inside
    it, then `make compare` (the install step skipped: this interpreter is the environment)."""
    root = tmp_path_factory.mktemp("report")
    sweep_dir = root / "sweep"
    train = subprocess.run(
        [sys.executable, "train.py", "-m", *TINY, "algo=sft", "algo.learning_rate=1e-4,1e-3"]
        + [f"hydra.sweep.dir={sweep_dir}", f"outputs_root={root}/outputs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    fake_results(sweep_dir / "evaluation")
    made = subprocess.run(
        ["make", "-o", "install", "compare", f"SWEEP={sweep_dir}", f"PY={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-3000:]
    return sweep_dir, made


def test_make_compare_writes_report_html_with_every_panel(sweep):
    sweep_dir, made = sweep
    assert "report.html" in made.stdout
    page = Page((sweep_dir / "report.html").read_text(encoding="utf-8"))
    assert list(page.sections) == list(PANELS)
    assert page.external == [] and not page.tags & {"script", "link", "iframe"}  # self-contained
    figures = {name: section["figures"] for name, section in page.sections.items()}
    assert figures["curves-by-algorithm"] == ["curves-algo-sft"]
    assert figures["curves-by-hyperparameter"] == ["curves-param-algo.learning_rate"]
    assert figures["parallel-coordinates"] == ["parallel-coordinates-plot"]
    assert figures["evaluation"] == ["evaluation-plot-0-reward_vs_kl"]
    for name in ("curves-by-algorithm", "curves-by-hyperparameter", "parallel-coordinates", "evaluation"):
        images = page.sections[name]["images"]
        assert len(images) == 1 and decoded(images[0]).size[0] > 100, name
    assert page.sections["ranking"]["tables"] == ["ranking-table"]
    assert page.sections["evaluation"]["tables"] == ["evaluation-table-0"]


def test_the_ranking_is_lowest_eval_loss_first_and_can_be_reversed(sweep):
    sweep_dir, _ = sweep
    page = Page((sweep_dir / "report.html").read_text(encoding="utf-8"))
    header, *rows = page.tables["ranking-table"]
    assert header == ["rank", "job", "algo.learning_rate", "status", "eval_loss", "wall_time_s", "peak_rss_mb"]
    losses = [float(row[4]) for row in rows]
    assert len(rows) == 2 and losses == sorted(losses) and [r[3] for r in rows] == ["finished"] * 2
    assert "Ranked by eval_loss (min)." in (sweep_dir / "compare.md").read_text()

    jobs = find_jobs(sweep_dir)
    assert [j["name"] for j in rank_jobs(jobs, "eval_loss")] == [r[1] for r in rows]
    maximised = Page(render(sweep_dir, jobs, "eval_loss", False, []))
    assert [r[1] for r in maximised.tables["ranking-table"][1:]] == [r[1] for r in reversed(rows)]


def test_the_evaluation_table_shows_each_policy_with_its_intervals(sweep):
    sweep_dir, _ = sweep
    header, *rows = Page((sweep_dir / "report.html").read_text(encoding="utf-8")).tables["evaluation-table-0"]
    assert header[:4] == ["Policy", "Algo", "Avg reward", "Win vs base (RM)"]
    assert [r[0] for r in rows] == ["base", "dpo", "dataset chosen"]
    cells = dict(zip(header, rows[1]))
    assert cells["Avg reward"] == "0.400 [0.300, 0.500]" and cells["Win vs base (RM)"] == "0.625 [0.525, 0.725]"
    assert cells["KL / response"] == "1.500 [1.400, 1.600]" and cells["Hacking flag"] == "no"
    assert dict(zip(header, rows[0]))["Win vs base (RM)"] == "–"


def write_run(job_dir: Path, overrides: list[str], summary: dict, losses: list[float], logger: str = "none"):
    """A run directory as train.py leaves it, with made-up numbers."""
    (job_dir / ".hydra").mkdir(parents=True)
    config = {
        "algo": {"name": "dpo", "beta": 0.1},
        "lora": {"name": "r16", "r": 16},
        "optimized_metric": "eval_accuracy",
        "logger": {"name": logger, "project": "rlhf" if logger != "none" else None, "entity": None, "group": None},
    }
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["algo=dpo", *overrides]))
    (job_dir / "summary.json").write_text(json.dumps({"algo": "dpo", **summary}))
    rows = [{"step": i + 1, "loss": v, "rewards/accuracies": 0.5} for i, v in enumerate(losses)]
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def fake_sweep(root: Path, logger: str = "none") -> Path:
    """Three DPO jobs over beta (numbers) and lora (a group choice), one of them failed."""
    sweep_dir = root / "grid"
    write_run(sweep_dir / "0", ["algo.beta=0.05", "lora=r8"], {"status": "finished", "eval_accuracy": 0.5}, [0.7, 0.6])
    write_run(sweep_dir / "1", ["algo.beta=0.3", "lora=r8"], {"status": "finished", "eval_accuracy": 0.75}, [0.7, 0.5])
    failed = {"status": "failed", "error": "out of memory"}
    write_run(sweep_dir / "2", ["algo.beta=0.3", "lora=r16"], failed, [0.7], logger)
    return sweep_dir


def test_two_hyperparameters_get_a_figure_each_and_parallel_axes(tmp_path):
    sweep_dir = fake_sweep(tmp_path)
    jobs = find_jobs(sweep_dir)
    assert hyperparameters(jobs) == {
        "algo.beta": {"0": "0.05", "1": "0.3", "2": "0.3"},
        "lora": {"0": "r8", "1": "r8", "2": "r16"},
    }
    main([str(sweep_dir)])
    page = Page((sweep_dir / "report.html").read_text(encoding="utf-8"))
    assert page.sections["curves-by-hyperparameter"]["figures"] == ["curves-param-algo.beta", "curves-param-lora"]
    assert "1 job(s) without eval_accuracy left out" in (sweep_dir / "report.html").read_text()
    header, *rows = page.tables["ranking-table"]
    assert [r[1] for r in rows] == ["1", "0", "2"] and rows[2][4].startswith("failed: out of memory")
    assert "evaluation" not in page.sections


def test_a_directory_with_only_results_json_gets_the_evaluation_panel(tmp_path, capsys):
    fake_results(tmp_path / "eval")
    main([str(tmp_path / "eval")])
    page = Page((tmp_path / "eval" / "report.html").read_text(encoding="utf-8"))
    assert list(page.sections) == ["evaluation"] and not (tmp_path / "eval" / "compare.md").exists()
    assert "report.html" in capsys.readouterr().out


def test_a_metric_without_a_known_direction_must_be_told(tmp_path):
    sweep_dir = fake_sweep(tmp_path)
    with pytest.raises(SystemExit, match="cannot tell whether 'eval_pairs'"):
        main([str(sweep_dir), "--metric", "eval_pairs"])
    main([str(sweep_dir), "--metric", "eval_accuracy", "--minimize"])
    assert "Ranked by eval_accuracy (min)." in (sweep_dir / "compare.md").read_text()


def filters(runset) -> list[tuple]:
    """A runset's filters as (key, op, value); wandb-workspaces keeps them as one expression string."""
    from wandb_workspaces import expr

    return [(f.key.name, f.op, f.value) for f in expr.string_to_filterexpr_list(runset.filters)]


def test_wandb_report_offline_says_so_in_one_line_and_writes_the_html(tmp_path, monkeypatch, capsys):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    sweep_dir = fake_sweep(tmp_path, logger="wandb")
    main([str(sweep_dir), "--wandb-report"])
    assert OFFLINE in capsys.readouterr().out.splitlines()
    assert (sweep_dir / "report.html").is_file() and not (sweep_dir / report_wandb.LINK_FILE).exists()


def test_wandb_report_online_is_saved_and_linked_from_the_sweep(tmp_path, monkeypatch, capsys):
    import rlhf.run.tracking

    saved = []
    monkeypatch.setattr(rlhf.run.tracking, "wandb_key_found", lambda: True)
    monkeypatch.setattr(report_wandb, "default_entity", lambda: "me")
    monkeypatch.setattr(report_wandb, "publish", lambda report: saved.append(report) or "https://wandb.example/r")
    sweep_dir = fake_sweep(tmp_path, logger="wandb")
    main([str(sweep_dir), "--wandb-report"])
    assert "W&B report: https://wandb.example/r" in capsys.readouterr().out
    assert (sweep_dir / report_wandb.LINK_FILE).read_text() == "https://wandb.example/r\n"
    assert "https://wandb.example/r" in (sweep_dir / "compare.md").read_text()
    assert 'href="https://wandb.example/r"' in (sweep_dir / "report.html").read_text()
    (report,) = saved
    assert (report.entity, report.project) == ("me", "rlhf")
    assert filters(report.blocks[3].runsets[0])[0] == ("Group", "=", "grid")  # the sweep's group: its folder name


def test_the_wandb_report_builder_makes_each_panel_offline(sweep):
    import wandb_workspaces.reports.v2 as wr

    sweep_dir, _ = sweep
    jobs = find_jobs(sweep_dir)
    where = report_wandb.Target(entity=None, project="rlhf", group="my-sweep")
    report = report_wandb.build_report(
        sweep_dir, jobs, "eval_loss", True, find_results(sweep_dir), where=where, entity="team"
    )
    assert (report.entity, report.project, report.title) == ("team", "rlhf", "Sweep sweep")
    headings = [b.text for b in report.blocks if isinstance(b, (wr.H2, wr.H3))]
    assert headings == [
        "Ranked jobs",
        "Training curves by algorithm",
        "algo=sft",
        "Training curves by swept hyperparameter",
        "algo.learning_rate",
        "Hyperparameters against the metric",
        "Evaluation results",
        "evaluation/results.json",
    ]
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    for grid in grids:  # every runset is the sweep's W&B group, in the sweep's project
        (runset,) = grid.runsets
        assert (runset.entity, runset.project, filters(runset)[0]) == ("team", "rlhf", ("Group", "=", "my-sweep"))
        for panel in grid.panels:  # each panel's spec builds without a server
            assert panel._to_model().model_dump_json(by_alias=True, exclude_none=True)
    ranked, by_algo, by_param, parallel = grids
    assert isinstance(ranked.panels[0], wr.RunComparer)
    assert ranked.runsets[0].order[0].name == wr.SummaryMetric("eval_loss") and ranked.runsets[0].order[0].ascending
    assert filters(by_algo.runsets[0])[1] == ("JobType", "=", "sft")  # the algorithm: its runs' W&B job type
    assert [p.y for p in by_algo.panels] == [["loss"], ["mean_token_accuracy"], ["entropy"], ["grad_norm"]]
    assert {p.groupby.name for p in by_param.panels} == {"algo.learning_rate"}
    assert [c.metric for c in parallel.panels[0].columns] == [
        wr.Config("algo.learning_rate"),
        wr.SummaryMetric("eval_loss"),
    ]
    tables = [b.text for b in report.blocks if isinstance(b, wr.MarkdownBlock)]
    assert tables[0].startswith("| rank | job | overrides | status | eval_loss |")
    assert "| dpo | dpo | 0.400 [0.300, 0.500] |" in tables[1]


def test_the_report_modules_import_no_network_client_eagerly():
    # report.html must work without W&B: rlhf.report imports neither wandb nor transformers until --wandb-report.
    code = "import sys, rlhf.report; print(sorted(m for m in ('wandb', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_damaged_summary_or_a_torn_metrics_line_is_named_and_skipped(tmp_path, caplog, capsys):
    # each was a JSONDecodeError traceback naming no file
    for name, loss in (("0", 0.5), ("1", 0.4), ("2", 0.3)):
        (tmp_path / name).mkdir()
        summary = {"status": "finished", "algo": "dpo", "eval_loss": loss}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
        (tmp_path / name / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n')
    (tmp_path / "1" / "summary.json").write_text('{"status": "fini')  # damaged
    with open(tmp_path / "2" / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 2, "lo')  # a SIGKILL cut the last append short
    jobs = find_jobs(tmp_path)
    assert [j["name"] for j in jobs] == ["0", "2"] and jobs[1]["metrics"] == [{"step": 1, "loss": 0.7}]
    assert f"skipped {tmp_path / '1'}: its summary.json is damaged" in caplog.text
    assert f"{tmp_path / '2' / 'metrics.jsonl'}: dropped its torn last line 2" in caplog.text
    assert main([str(tmp_path), "--metric", "eval_loss"]) in (0, None)
