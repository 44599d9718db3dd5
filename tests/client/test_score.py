"""``client score`` against a real server: submissions, report, plots, metrics, validation."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sensorium_client import Client
from sensorium_client.scoring.runner import group_names
from sensorium_client.scoring.tracks import SUBMISSION_FILES, Job
from sensorium_data import Session
from sensorium_data.metrics import MouseScorer, aggregate
from tests.conftest import run_console_script as run
from tests.serving import ServerThread


@pytest.fixture(scope="module")
def scored(
    server: ServerThread, tiny_mouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("scores")
    result = run(
        "client",
        "score",
        "--data",
        str(tiny_mouse),
        "--server",
        server.target,
        "--model",
        "tiny",
        "--track",
        "both",
        "--tier",
        "all",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "| final_test_main |" in result.stdout
    return out


def test_writes_submissions_zips_report_and_plots(scored: Path, tiny_mouse: Path) -> None:
    for name in SUBMISSION_FILES.values():
        table = pq.read_table(scored / name)
        assert table.schema.names == ["mouse", "trial_indices", "prediction", "neuron_ids"]
        assert pq.ParquetFile(scored / name).metadata.row_group(0).column(2).compression == "BROTLI"
    with zipfile.ZipFile(scored / "submission_main_track.zip") as archive:
        assert sorted(archive.namelist()) == sorted(
            ["predictions_live_main.parquet.brotli", "predictions_final_main.parquet.brotli"]
        )
    for phase in ("live", "final"):  # zipped and uploaded separately (starter kit README)
        with zipfile.ZipFile(scored / f"submission_bonus_track_{phase}.zip") as archive:
            assert archive.namelist() == [SUBMISSION_FILES[f"{phase}_test_bonus"]]
    report = json.loads((scored / "report.json").read_text())
    assert report["model"]["name"] == "tiny"
    assert len(report["model"]["manifest_sha256"]) == 64
    assert report["datasets"] == [str(tiny_mouse.resolve())]
    assert {"track:main", "track:bonus", "oracle", "final_test_bonus"} <= set(report["groups"])
    assert any(g.startswith("bonus:") for g in report["groups"])
    assert "fraction_of_ceiling" in report["groups"]["track:main"]
    assert "| oracle |" in (scored / "report.md").read_text()
    pngs = sorted(p.name for p in scored.glob("*.png"))
    assert pngs[0] == "bonus_by_stimulus.png"
    assert "correlation_histograms.png" in pngs
    assert any(p.startswith("traces_") for p in pngs)
    for png in scored.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (scored / "parts").exists()  # joined into the submission files, then removed


def test_metrics_equal_a_direct_computation(
    scored: Path, server: ServerThread, tiny_mouse: Path
) -> None:
    session = Session(tiny_mouse)
    scorers: dict[str, MouseScorer] = {}
    jobs = [
        Job("main", "live_test_main"),
        Job("main", "final_test_main"),
        Job("bonus", "live_test_bonus"),
        Job("bonus", "final_test_bonus"),
        Job("oracle", "oracle"),
    ]
    with Client(server.target) as client:
        for job in jobs:
            for trial in session.trials(job.tier):
                predictions = client.predict(
                    trial.video_frames(),
                    trial.behavior_frames(),
                    trial.pupil_center_frames(),
                    model="tiny",
                )
                for name in group_names(job, trial):
                    scorers.setdefault(name, MouseScorer(session.n_neurons))
                    scorers[name].add(trial.response_frames(), predictions, trial.clip_id)
    report = json.loads((scored / "report.json").read_text())["groups"]
    assert set(report) == set(scorers)
    for name, scorer in scorers.items():
        expected = aggregate({session.name: scorer.result()})
        for metric, figures in expected.items():
            got = report[name]["metrics"][metric]["pooled_neurons"]
            want = figures["pooled_neurons"]
            assert (got is None and np.isnan(want)) or got == pytest.approx(want, abs=1e-9), (
                name,
                metric,
            )


def _broken(source: Path, out: Path, change: str) -> Path:
    table = pq.read_table(source)
    rows = table.to_pylist()
    if change == "missing trial":
        rows = rows[1:]
    elif change == "neuron count":
        rows[0]["prediction"] = rows[0]["prediction"][:-1]
    else:
        rows[0]["prediction"][2][3] = float("nan")
    out.mkdir(exist_ok=True)
    target = out / source.name
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), target, compression="brotli")
    return target


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("missing trial", "1 trial(s) of final_test_main missing"),
        ("neuron count", "prediction has 39 neurons, expected 40"),
        ("nan", "1 NaN or infinite values"),
    ],
)
def test_validate_accepts_ours_and_names_what_is_broken(
    scored: Path, tiny_mouse: Path, tmp_path: Path, change: str, needle: str
) -> None:
    source = scored / SUBMISSION_FILES["final_test_main"]
    ok = run("client", "score", "--data", str(tiny_mouse), "--validate", str(source))
    assert ok.returncode == 0
    assert ok.stdout.strip().splitlines()[-1] == f"{source.name}: valid"
    bad = _broken(source, tmp_path, change)
    result = run("client", "score", "--data", str(tiny_mouse), "--validate", str(bad), "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert any(needle in p for p in problems), problems


def test_resume_keeps_finished_mice(scored: Path, server: ServerThread, tiny_mouse: Path) -> None:
    marker = next((scored / "mice").glob("*.json"))
    before = marker.stat().st_mtime_ns
    result = run(
        "client",
        "score",
        "--data",
        str(tiny_mouse),
        "--server",
        server.target,
        "--model",
        "tiny",
        "--out",
        str(scored),
        "--resume",
        "--no-progress",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert marker.stat().st_mtime_ns == before
    assert "already scored" in result.stderr


def test_unreachable_server_is_one_line(tiny_mouse: Path, tmp_path: Path) -> None:
    result = run(
        "client",
        "score",
        "--data",
        str(tiny_mouse),
        "--server",
        "localhost:1",
        "--timeout",
        "3",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("client: UNAVAILABLE")
    assert len(result.stderr.strip().splitlines()) == 1


def test_final_only_run_uses_no_track_ceiling_of_live_and_final(
    server: ServerThread, tiny_mouse: Path, tmp_path: Path
) -> None:
    result = run(
        "client",
        "score",
        "--data",
        str(tiny_mouse),
        "--server",
        server.target,
        "--model",
        "tiny",
        "--track",
        "main",
        "--tier",
        "final",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    groups = json.loads((tmp_path / "report.json").read_text())["groups"]
    ceiling = json.loads((tiny_mouse / "ground_truth/ceiling.json").read_text())["ceiling"]
    assert groups["track:main"]["trials"] < ceiling["track:main"]["trials"]
    assert "fraction_of_ceiling" not in groups["track:main"]  # live + final: not comparable
    assert "fraction_of_ceiling" in groups["final_test_main"]


def test_plots_name_model_neuron_ids_and_bonus_trials(
    scored: Path, tiny_mouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.figure

    from sensorium_client.scoring.plots import write_plots
    from sensorium_client.scoring.results import MouseResult

    texts: list[str] = []

    def record(figure: matplotlib.figure.Figure, *args: object, **kwargs: object) -> None:
        texts.extend(t.get_text() for t in figure.texts)
        for ax in figure.axes:
            texts.append(ax.get_title())
            texts.extend(label.get_text() for label in ax.get_xticklabels())

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    session = Session(tiny_mouse)
    result = MouseResult.load(scored / "mice", session.name)
    report = json.loads((scored / "report.json").read_text())
    write_plots([result], report, tmp_path, {session.name: session.unit_ids})
    assert texts.count("tiny v1") + sum("tiny v1:" in t for t in texts) >= 3  # every figure
    traces = [t for t in texts if t.startswith(("best: neuron", "median: neuron", "worst: neuron"))]
    assert len(traces) == 3
    column = result.traces.neurons[0]  # type: ignore[union-attr]
    assert traces[0].startswith(f"best: neuron {int(session.unit_ids[column])},")
    assert any("trials" in t and "\n" in t for t in texts)  # bonus bars carry trial counts
