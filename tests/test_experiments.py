"""Experiments: aggregation of accuracy.json files into tables and plots, the claims logic, the
comparison report, the cloud-cover subset of a features store, and the Snakemake targets
(dry runs on a tiny config: the expected jobs, and a changed value reruns only its branch)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import paper_protocol, run_together
import zarr

from pipeline import experiments
from pipeline.cloud_subset import SubsetOptions, aoi_cloud_cover, keep_dates, scene_cloud_cover, subset_features
from pipeline.cloud_subset import main as subset_main
from pipeline.errors import AccuracyError, ConfigError, FeatureError, StacError
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.report import compare, experiment_tables
from pipeline.report.claims import beats_baselines, loses_less_with_few_labels, overall
from pipeline.training.losses import rampup_weight

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ("cultivated", "forest", "water")


def accuracy_doc(oa: float, kappa: float, f1: float, class_f1: tuple[float, float, float] = (0.9, 0.8, 0.7),
                 support: tuple[int, int, int] = (60, 30, 10)) -> dict:
    """A hand-written accuracy.json (keys of pipeline.evaluate)."""
    return {"overall_accuracy": oa, "kappa": kappa, "f1_weighted": f1, "map_date": "2022-12-26",
            "evaluated_pixels": sum(support), "classes": list(CLASSES),
            "per_class": {c: {"precision": f, "recall": f, "f1": f, "support": s}
                          for c, f, s in zip(CLASSES, class_f1, support, strict=True)}}


def write_run(root: Path, name: str, doc: dict, dates: int | None = 20) -> tuple[str, str | None]:
    acc = root / name / "accuracy.json"
    acc.parent.mkdir(parents=True, exist_ok=True)
    acc.write_text(json.dumps(doc))
    if dates is None:
        return str(acc), None
    card = root / name / "model_card.json"
    card.write_text(json.dumps({"model": "x", "data": {"shape": {"time": dates, "channel": 3, "y": 4, "x": 4}}}))
    return str(acc), str(card)


COMPARE = {  # model -> (OA, kappa, W-F1)
    "rf": (0.80, 0.60, 0.78), "svm": (0.75, 0.50, 0.70), "pixel_lstm": (0.85, 0.70, 0.84),
    "convlstm": (0.90, 0.80, 0.89), "semi_convlstm": (0.95, 0.90, 0.94),
}
FRACTIONS = {  # (model, fraction) -> W-F1
    ("convlstm", 1.0): 0.90, ("convlstm", 0.5): 0.86, ("convlstm", 0.1): 0.70,
    ("semi_convlstm", 1.0): 0.94, ("semi_convlstm", 0.5): 0.93, ("semi_convlstm", 0.1): 0.90,
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """compare + label_fraction tables written by the aggregate stage from hand-written runs."""
    tmp_path = tmp_path_factory.mktemp("tables")
    runs = []
    for model, (oa, k, f1) in COMPARE.items():
        acc, card = write_run(tmp_path / "runs", f"compare-{model}", accuracy_doc(oa, k, f1))
        runs.append({"aoi": "demo", "model": model, "value": None, "accuracy": acc, "card": card})
    out = tmp_path / "experiments"
    args = ["--experiment", "compare", "--runs", json.dumps(runs), "--csv", str(out / "compare.csv"),
            "--json", str(out / "compare.json"), "--png", str(out / "compare.png")]
    assert experiments.main(args) == 0
    runs = []
    for (model, frac), f1 in FRACTIONS.items():
        acc, card = write_run(tmp_path / "runs", f"lf-{model}-{frac}", accuracy_doc(f1 + 0.01, f1 - 0.1, f1))
        runs.append({"aoi": "demo", "model": model, "value": frac, "accuracy": acc, "card": card})
    args = ["--experiment", "label_fraction", "--runs", json.dumps(runs), "--csv", str(out / "label_fraction.csv"),
            "--json", str(out / "label_fraction.json"), "--png", str(out / "label_fraction.png")]
    assert experiments.main(args) == 0
    return {"compare": out / "compare.json", "label_fraction": out / "label_fraction.json"}


def test_aggregation_table_values(tables: dict[str, Path]) -> None:
    doc = json.loads(tables["compare"].read_text())
    assert doc["experiment"] == "compare" and doc["paper"] == "section 4.2, Table 1"
    assert [r["model"] for r in doc["rows"]] == list(COMPARE)
    for row in doc["rows"]:
        assert (row["overall_accuracy"], row["kappa"], row["f1_weighted"]) == COMPARE[row["model"]]
        assert row["dates"] == 20 and row["evaluated_pixels"] == 100 and row["label"] == "-"
        assert row["per_class"]["forest"] == {"f1": 0.8, "support": 30}
    with open(tables["compare"].with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == list(COMPARE)
    assert float(rows[4]["f1_weighted"]) == 0.94 and float(rows[0]["kappa"]) == 0.60
    assert float(rows[1]["f1_water"]) == 0.7 and rows[1]["value"] == ""
    lf = json.loads(tables["label_fraction"].read_text())
    got = {(r["model"], r["value"]): r["f1_weighted"] for r in lf["rows"]}
    assert got == FRACTIONS
    assert [r["label"] for r in lf["rows"][:3]] == ["100 %", "50 %", "10 %"]


def test_plots_are_png(tables: dict[str, Path]) -> None:
    for path in tables.values():
        data = path.with_suffix(".png").read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    exp = experiment_tables.EXPERIMENTS["cloud_cover"]
    rows = [{"aoi": "a", "model": "semi_convlstm", "value": v, "label": exp.label(v), "overall_accuracy": oa,
             "kappa": 0.5, "f1_weighted": 0.5, "dates": n} for v, oa, n in ((1, 0.9, 12), (100, 0.95, 34))]
    from pipeline.report.experiment_figures import experiment_png

    assert experiment_png(exp, rows)[:8] == PNG_MAGIC
    assert [r["label"] for r in rows] == ["< 1 %", "all"]
    assert experiment_tables.EXPERIMENTS["time_length"].label(6) == "t=6"


def test_aggregation_rejects_bad_runs(tmp_path: Path) -> None:
    acc, _ = write_run(tmp_path, "r", {"overall_accuracy": 0.9})
    run = experiment_tables.Run("demo", "rf", None, acc)
    with pytest.raises(AccuracyError, match="lacks"):
        experiment_tables.build_table("compare", [run], [{"overall_accuracy": 0.9}], [None])
    with pytest.raises(ConfigError, match="listed twice"):
        doc = accuracy_doc(0.9, 0.8, 0.9)
        experiment_tables.build_table("compare", [run, run], [doc, doc], [None, None])
    with pytest.raises(ConfigError, match="needs a value"):
        experiment_tables.build_table("label_fraction", [run], [accuracy_doc(0.9, 0.8, 0.9)], [None])
    with pytest.raises(ConfigError, match="non-empty JSON list"):
        experiment_tables.parse_runs("[]")
    with pytest.raises(AccuracyError, match="cannot read accuracy"):
        experiments.read_json(tmp_path / "missing.json", what="accuracy")
    assert experiments.main(["--experiment", "compare", "--runs", "{bad", "--csv", "a", "--json", "b",
                             "--png", "c"]) == 2


def compare_rows(values: dict[str, tuple[float, float, float]], aoi: str = "demo") -> list[dict]:
    rows = []
    for model, (oa, k, f1) in values.items():
        doc = accuracy_doc(oa, k, f1, class_f1=(f1, f1 - 0.3 if model == "semi_convlstm" else f1, f1))
        rows.append(experiment_tables.run_row(experiment_tables.EXPERIMENTS["compare"],
                                             experiment_tables.Run(aoi, model, None, "x"), doc))
    return rows


def test_claim_beats_baselines() -> None:
    claims = beats_baselines(compare_rows(COMPARE))
    assert [c.status for c in claims] == ["holds"] and overall(claims) == "holds"
    assert "OA 0.950 vs RF 0.800, SVM 0.750" in claims[0].evidence
    # RF better on W-F1 only: the claim fails, names the metric and the losing class
    worse = {**COMPARE, "rf": (0.80, 0.60, 0.96)}
    claims = beats_baselines(compare_rows(worse))
    assert claims[0].status == "fails" and overall(claims) == "fails"
    text = " ".join(claims[0].diagnosis)
    assert "W-F1: Semi-ConvLSTM 0.940 is not above RF 0.960 (difference -0.020)" in text
    assert "forest: F1 0.640 vs 0.960" in text and "already reaches W-F1 0.960" in text
    assert "OA:" not in text  # OA and kappa still beat both baselines
    # equal is not better
    tie = {**COMPARE, "svm": (0.95, 0.5, 0.5)}
    assert beats_baselines(compare_rows(tie))[0].status == "fails"
    missing = beats_baselines(compare_rows({"semi_convlstm": (0.9, 0.8, 0.9), "rf": (0.5, 0.4, 0.5)}))
    assert missing[0].status == "not evaluated" and "svm" in missing[0].evidence


def test_claims_and_plot_per_aoi() -> None:
    rows = compare_rows(COMPARE, aoi="north") + compare_rows({**COMPARE, "svm": (0.99, 0.95, 0.97)}, aoi="south")
    claims = beats_baselines(rows)
    assert [(c.aoi, c.status) for c in claims] == [("north", "holds"), ("south", "fails")]
    assert overall(claims) == "fails" and "SVM 0.990" in claims[1].diagnosis[0]
    from pipeline.report.experiment_figures import experiment_png

    png = experiment_png(experiment_tables.EXPERIMENTS["compare"], rows)
    assert png[:8] == PNG_MAGIC and png != experiment_png(experiment_tables.EXPERIMENTS["compare"], rows[:5])


def fraction_rows(values: dict[tuple[str, float], float]) -> list[dict]:
    exp = experiment_tables.EXPERIMENTS["label_fraction"]
    return [experiment_tables.run_row(exp, experiment_tables.Run("demo", m, v, "x"), accuracy_doc(f1, f1, f1))
            for (m, v), f1 in values.items()]


def test_claim_loses_less_with_few_labels() -> None:
    claims = loses_less_with_few_labels(fraction_rows(FRACTIONS), margin=0.02)
    assert claims[0].status == "holds"  # losses 0.04 vs 0.20
    assert "loss +0.040" in claims[0].evidence and "loss +0.200" in claims[0].evidence
    # semi loses 0.04, convlstm 0.05: less, but not by the margin 0.02
    close = {**FRACTIONS, ("convlstm", 0.1): 0.85}
    claims = loses_less_with_few_labels(fraction_rows(close), margin=0.02)
    assert claims[0].status == "fails"
    assert "only 0.010 less than ConvLSTM" in " ".join(claims[0].diagnosis)
    assert loses_less_with_few_labels(fraction_rows(close), margin=0.005)[0].status == "holds"
    # the supervised model does not lose at all: said plainly
    flat = {**FRACTIONS, ("convlstm", 0.1): 0.90}
    text = " ".join(loses_less_with_few_labels(fraction_rows(flat))[0].diagnosis)
    assert "ConvLSTM itself loses only +0.000" in text and "loses more than ConvLSTM" in text
    # the model cards' training facts are part of the diagnosis
    card = {"best_epoch": 6, "epochs_run": 11, "stopped_early": True, "metrics": {"val_oa": 0.382},
            "options": {"epochs": 12, "max_windows_per_epoch": 48, "label_fraction": 0.1}}
    rows = fraction_rows(flat)
    rows[-1] = experiment_tables.run_row(experiment_tables.EXPERIMENTS["label_fraction"],
                                        experiment_tables.Run("demo", "semi_convlstm", 0.1, "x"), accuracy_doc(0.9, 0.9, 0.9), card)
    assert rows[-1]["training"]["max_windows_per_epoch"] == 48 and rows[-1]["training"]["val_oa"] == 0.382
    text = " ".join(loses_less_with_few_labels(rows)[0].diagnosis)
    assert "Semi-ConvLSTM at 10 %: best epoch 6 of 11 run (stopped early), validation OA 0.382" in text
    assert "max_windows_per_epoch=48 windows holding a label per epoch (12 epochs)" in text
    # stopped right after the consistency ramp-up: the weight at the best epoch is named
    card["options"].update(consistency_weight=10.0, rampup_epochs=5, unlabelled_window_ratio=1.0)
    card.update(best_epoch=4, epochs_run=9)
    rows[-1] = experiment_tables.run_row(experiment_tables.EXPERIMENTS["label_fraction"],
                                        experiment_tables.Run("demo", "semi_convlstm", 0.1, "x"), accuracy_doc(0.9, 0.9, 0.9), card)
    text = " ".join(loses_less_with_few_labels(rows)[0].diagnosis)
    w4 = rampup_weight(3, w_max=10.0, rampup_epochs=5)  # epoch 4 trained with the 0-based epoch 3
    assert f"stopped improving at epoch 4, when the ramped consistency weight was {w4:.2g} of w_max=10" in text
    assert "plus 1 times as many windows without a label" in text
    assert "train.convlstm.consistency_scaling: labelled_share" in text  # an unscaled run is pointed at the scaling
    card["options"]["consistency_scaling"] = "labelled_share"  # a scaled run: the effective weight is named
    card["metrics"]["labelled_share"] = 0.025
    rows[-1] = experiment_tables.run_row(experiment_tables.EXPERIMENTS["label_fraction"],
                                        experiment_tables.Run("demo", "semi_convlstm", 0.1, "x"), accuracy_doc(0.9, 0.9, 0.9), card)
    text = " ".join(loses_less_with_few_labels(rows)[0].diagnosis)
    assert f"of w_max=10 (times the labelled share 0.025 of the epoch's pixels: {w4 * 0.025:.2g})" in text
    assert "train.convlstm.consistency_scaling: labelled_share" not in text
    card.update(best_epoch=9, epochs_run=12)  # best long after the ramp: no such note
    rows[-1] = experiment_tables.run_row(experiment_tables.EXPERIMENTS["label_fraction"],
                                        experiment_tables.Run("demo", "semi_convlstm", 0.1, "x"), accuracy_doc(0.9, 0.9, 0.9), card)
    assert "ramped consistency weight" not in " ".join(loses_less_with_few_labels(rows)[0].diagnosis)
    assert "epoch budget ran out" not in " ".join(loses_less_with_few_labels(rows)[0].diagnosis)
    card.update(best_epoch=12, epochs_run=12, stopped_early=False)  # best at the last epoch of the budget
    rows[-1] = experiment_tables.run_row(experiment_tables.EXPERIMENTS["label_fraction"],
                                        experiment_tables.Run("demo", "semi_convlstm", 0.1, "x"), accuracy_doc(0.9, 0.9, 0.9), card)
    text = " ".join(loses_less_with_few_labels(rows)[0].diagnosis)
    assert "best epoch 12 of 12 run, validation OA 0.382 - still improving when the epoch budget ran out" in text
    # no run at <= 10 %: not evaluated
    partial = {k: v for k, v in FRACTIONS.items() if k[1] != 0.1}
    assert loses_less_with_few_labels(fraction_rows(partial))[0].status == "not evaluated"


def test_report_contains_every_table_and_claims(tables: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert compare.main(["--tables", str(tables["compare"]), str(tables["label_fraction"]), "--out", str(out),
                         "--options", json.dumps({"claim_margin": 0.02})]) == 0
    text = out.read_text()
    assert "Model comparison (paper Table 1)" in text and "Labelled dates (paper Fig. 10)" in text
    assert text.count("data:image/png;base64") == 2
    assert "<td>Semi-ConvLSTM</td><td>0.950</td><td>0.900</td><td>0.940</td>" in text  # Table 1 row
    assert "<td>demo</td><td>ConvLSTM</td><td>10 %</td><td>0.710</td><td>0.600</td><td>0.700</td>" in text
    assert text.count("HOLDS") == 4 and "DOES NOT HOLD" not in text
    assert "Training runs (from the model cards" in text
    # only compare: the label claim is reported as not evaluated, not hidden
    only = compare.report_html(compare.load_tables([tables["compare"]]), compare.ReportOptions())
    assert "NOT EVALUATED" in only and "run `snakemake label_fraction`" in only
    with pytest.raises(ConfigError, match="claim_margin"):
        compare.ReportOptions.from_options({"claim_margin": 2})
    with pytest.raises(ConfigError, match="unknown config key 'experiments.margin'"):
        compare.ReportOptions.from_options({"margin": 0.1})


def test_report_says_when_claims_fail(tables: dict[str, Path]) -> None:
    loaded = compare.load_tables(list(tables.values()))
    for row in loaded["compare"]["rows"]:
        if row["model"] == "rf":
            row["overall_accuracy"] = 0.99
    html = compare.report_html(loaded, compare.ReportOptions())
    assert "DOES NOT HOLD" in html and "Why it does not hold (demo)" in html
    assert "OA: Semi-ConvLSTM 0.950 is not above RF 0.990" in html


# ---- cloud-cover subset ---------------------------------------------------------------------
def features_store(n: int = 5) -> xr.Dataset:
    rng = np.random.default_rng(0)
    times = np.array([f"2021-0{i + 1}-01" for i in range(n)], dtype="datetime64[ns]")
    valid = np.ones((n, 4, 4), dtype=bool)
    valid[1, :2] = False  # 50 % invalid
    valid[3, :1] = False  # 25 %
    return xr.Dataset(
        {"features": (("time", "channel", "y", "x"), rng.random((n, 2, 4, 4)).astype(np.float16)),
         "valid": (("time", "y", "x"), valid)},
        coords={"time": times, "item_ids": ("time", [f"A{i}" if i != 2 else "A2,B2" for i in range(n)]),
                "channel": ["c0", "c1"], "y": 3.1e6 - 30 * np.arange(4), "x": 6.8e5 + 30 * np.arange(4)},
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 6.8e5, 0.0, -30.0, 3.1e6]})


def test_cloud_cover_per_date_and_kept_dates() -> None:
    cover = {"A0": 0.0, "A1": 30.0, "A2": 5.0, "B2": 15.0, "A3": 60.0, "A4": 80.0}
    got = scene_cloud_cover(["A0", "A1", "A2,B2", "A3", "A4"], cover)
    np.testing.assert_allclose(got, [0, 30, 10, 60, 80])
    np.testing.assert_array_equal(keep_dates(got, max_cloud_cover=10), [True, False, False, False, True])
    np.testing.assert_array_equal(keep_dates(got, max_cloud_cover=100), [True] * 5)
    np.testing.assert_allclose(aoi_cloud_cover(features_store().valid.values), [0, 50, 0, 25, 0])
    with pytest.raises(StacError, match="not in the frozen items"):
        scene_cloud_cover(["X"], cover)
    with pytest.raises(StacError, match="no eo:cloud_cover"):
        scene_cloud_cover(["A0"], {"A0": None})


def test_subset_store_keeps_dates_and_values(tmp_path: Path) -> None:
    ds = features_store()
    sub = subset_features(ds, SubsetOptions(max_cloud_cover=30, source="aoi", min_dates=2))
    kept = [0, 2, 3, 4]
    np.testing.assert_array_equal(sub.time.values, ds.time.values[kept])
    np.testing.assert_array_equal(sub.features.values, ds.features.values[kept])
    assert sub.attrs["cloud_subset"]["n_kept"] == 4 and sub.attrs["crs"] == "EPSG:32649"
    with pytest.raises(FeatureError, match="keeps 3 of 5 dates, the model needs 4"):
        subset_features(ds, SubsetOptions(max_cloud_cover=1, source="aoi", min_dates=4))
    with pytest.raises(ConfigError, match="max_cloud_cover"):
        SubsetOptions.from_options({"max_cloud_cover": 0})
    # the stage: scene cloud cover from frozen items, written as a Zarr store
    store, items = tmp_path / "features.zarr", tmp_path / "items.json"
    write_zarr_atomic(ds, store)
    cover = {"A0": 0.5, "A1": 0.2, "A2": 30.0, "B2": 40.0, "A3": 3.0, "A4": 50.0}
    items.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"id": k, "properties": {"eo:cloud_cover": v}} for k, v in cover.items()]}))
    out = tmp_path / "sub.zarr"
    assert subset_main(["--features", str(store), "--items", str(items), "--out", str(out),
                        "--options", json.dumps({"max_cloud_cover": 1})]) == 0
    got = xr.open_zarr(out)
    np.testing.assert_array_equal(got.time.values, ds.time.values[[0, 1, 4]])  # last date always kept
    assert got.item_ids.values.tolist() == ["A0", "A1", "A4"]


# ---- Snakemake targets (dry runs) -------------------------------------------------------------
def tiny_config() -> dict:
    config = paper_protocol(yaml.safe_load((REPO / "config.yaml").read_text()))
    config["aois"] = {"mini": {"bbox": [112.92, 28.12, 112.94, 28.14], "start": "2021-01-01", "end": "2021-12-31",
                               "crs": "EPSG:32649"}}
    config["train"]["time_steps"] = 4
    config["labels"]["scarcity"]["date_fraction"] = 1.0
    config["train"]["baselines"]["search_space"] = {"max_features": ["log2"], "C": [1.0]}
    config["experiments"] = {"models": ["rf", "semi_convlstm"],
                             "label_fraction": {"values": [1.0, 0.5], "models": ["convlstm", "semi_convlstm"]},
                             "time_steps": {"values": [2, 4], "models": ["semi_convlstm"]},
                             "max_cloud_cover": {"values": [10, 100], "models": ["semi_convlstm"]}}
    return config


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--cores", "1"]


def snakemake(workdir: Path, *args: str) -> str:
    proc = subprocess.run(snakemake_cmd(workdir, *args), check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def snakemake_together(workdir: Path, *runs: tuple[str, ...]) -> list[str]:
    """Independent dry runs of ``workdir`` (one tuple of arguments each), started together."""
    outputs = []
    for proc in run_together(*(snakemake_cmd(workdir, *args) for args in runs), timeout=120):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
    return outputs


def job_counts(text: str) -> dict[str, int]:
    """{rule: jobs} from the job table of a dry run."""
    counts = {}
    for line in io.StringIO(text):
        match = re.match(r"^([a-z_]+) +([0-9]+)$", line.rstrip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def fake_outputs(workdir: Path, dry_run: str, target: str) -> None:
    """Create every output listed in a dry run's log as an empty file/folder/store, then let Snakemake
    ``--touch`` them in DAG order (recording their parameters), as if ``target`` had run."""
    for line in dry_run.splitlines():
        if not line.startswith("    output: "):
            continue
        for path in line.removeprefix("    output: ").split(", "):
            out = workdir / path
            if path.endswith(".zarr"):  # an empty Zarr group (an empty folder is an incomplete store)
                zarr.open_group(str(out), mode="w")
            elif path.endswith("catalog"):
                out.mkdir(parents=True, exist_ok=True)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("{}")
    snakemake(workdir, target, "--touch", "--forceall")


@pytest.mark.workflow
def test_targets_dry_run_and_rerun_only_changed_branch(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    listing, everything = snakemake_together(  # two dry runs at once
        tmp_path, ("compare", "label_fraction", "time_length", "cloud_cover", "-n", "-p"), ("experiments", "-n"))
    counts = job_counts(listing)
    # compare: rf + semi_convlstm on the main paths; label_fraction: 0.5 x (convlstm, semi) (1.0 = main
    # runs, which adds the main convlstm); time_length: t=2 (t=4 = main); cloud_cover: < 10 % (100 = main)
    assert counts["train_model"] == 3 and counts["predict_map"] == 3 and counts["evaluate_map"] == 3
    assert counts["train_experiment_model"] == 4 and counts["predict_experiment_map"] == 4
    assert counts["evaluate_experiment_map"] == 4 and counts["subset_features"] == 1
    assert counts["aggregate_experiment"] == 4 and "report_experiments" not in counts
    assert all(counts[t] == 1 for t in ("compare", "label_fraction", "time_length", "cloud_cover"))
    # each model gets its train options: the varied one from the path, its own search-space keys
    commands = [line for line in listing.splitlines() if "-m pipeline.train " in line]
    options = {(c.split("--out ")[1].split()[0]): json.loads(c.split("--options '")[1].split("' --threads")[0])
               for c in commands}
    assert options["results/mini/models/rf"]["search_space"] == {"max_features": ["log2"]}
    assert options["results/mini/models/semi_convlstm"]["search_space"] is None
    assert "consistency_weight" not in options["results/mini/models/convlstm"]
    assert options["results/mini/experiments/label_fraction/0.5/models/convlstm"]["label_fraction"] == 0.5
    assert options["results/mini/experiments/time_length/2/models/semi_convlstm"]["time_steps"] == 2
    assert options["results/mini/experiments/cloud_cover/10/models/semi_convlstm"]["time_steps"] == 4
    assert options["results/mini/models/semi_convlstm"]["consistency_weight"] == 1.0  # config.yaml's
    assert job_counts(everything)["report_experiments"] == 1 and job_counts(everything)["train_model"] == 3

    fake_outputs(tmp_path, everything, "experiments")
    config = tiny_config()
    config["experiments"]["label_fraction"]["values"] = [1.0, 0.25]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    config = tiny_config()
    config["experiments"]["claim_margin"] = 0.05
    margin = tmp_path / "margin.yaml"
    margin.write_text(yaml.safe_dump(config, sort_keys=False))
    same, out, out_margin = snakemake_together(  # three dry runs at once
        tmp_path, ("experiments", "-n"), ("experiments", "-n", "--configfile", str(changed)),
        ("experiments", "-n", "--configfile", str(margin)))
    assert "Nothing to be done" in same
    assert job_counts(out) == {"train_experiment_model": 2, "predict_experiment_map": 2, "evaluate_experiment_map": 2,
                               "aggregate_experiment": 1, "report_experiments": 1, "experiments": 1}
    assert "label_fraction/0.25/models/convlstm" in out and "experiment=label_fraction" in out
    assert "label_fraction/0.5/" not in out.split("rule aggregate_experiment")[0]
    assert job_counts(out_margin) == {"report_experiments": 1, "experiments": 1}


def test_cross_validation_summary_is_the_mean_and_std_over_folds(tmp_path: Path) -> None:
    """cv.csv/.json: one row per model with the mean and sample std (numpy, ddof 1) of the folds'
    metrics, per-class F1 over the folds where the class has support; cv.png is a PNG."""
    folds = {"rf": [(0.70, 0.40, 0.68), (0.80, 0.55, 0.79), (0.75, 0.50, 0.74)],
             "semi_convlstm": [(0.90, 0.80, 0.89), (0.85, 0.70, 0.84), (0.95, 0.90, 0.94)]}
    runs = []
    for model, values in folds.items():
        for k, (oa, kappa, f1) in enumerate(values):
            support = (60, 30, 0 if k == 0 else 10)  # water absent from fold 0
            acc, card = write_run(tmp_path / "runs", f"{model}-{k}", accuracy_doc(oa, kappa, f1, (f1, f1, 0.5 + k / 10),
                                                                                   support))
            runs.append({"aoi": "demo", "model": model, "value": k, "accuracy": acc, "card": card})
    out = tmp_path / "experiments"
    assert experiments.main(["--experiment", "cv", "--runs", json.dumps(runs), "--csv", str(out / "cv.csv"),
                             "--json", str(out / "cv.json"), "--png", str(out / "cv.png")]) == 0
    doc = json.loads((out / "cv.json").read_text())
    assert len(doc["rows"]) == 6 and [r["label"] for r in doc["rows"][:3]] == ["fold 0", "fold 1", "fold 2"]
    summary = {r["model"]: r for r in doc["summary"]}
    for model, values in folds.items():
        arr = np.array(values)
        for j, metric in enumerate(("overall_accuracy", "kappa", "f1_weighted")):
            assert summary[model][f"{metric}_mean"] == pytest.approx(arr[:, j].mean())
            assert summary[model][f"{metric}_std"] == pytest.approx(arr[:, j].std(ddof=1))
        water = summary[model]["per_class"]["water"]
        assert water["folds"] == 2 and water["support"] == 20
        assert water["f1_mean"] == pytest.approx(np.mean([0.6, 0.7])) and water["f1_std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    rows = list(csv.DictReader((out / "cv.csv").open()))
    assert [r["model"] for r in rows] == ["rf", "semi_convlstm"] and rows[0]["folds"] == "3"
    assert float(rows[1]["overall_accuracy_mean"]) == pytest.approx(0.9)
    assert (out / "cv.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.workflow
def test_cv_target_trains_every_model_once_per_fold(tmp_path: Path) -> None:
    config = tiny_config()
    config["evaluation"] = {"folds": 3}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    listing = snakemake(tmp_path, "cv", "-n", "-p")
    counts = job_counts(listing)
    assert counts["train_experiment_model"] == 6 and counts["evaluate_experiment_map"] == 6
    assert counts["aggregate_experiment"] == 1 and "train_model" not in counts
    for k in range(3):
        assert f"--out results/mini/experiments/cv/{k}/models/rf --options" in listing
        assert f"--fold {k}" in listing
    labels = [line for line in listing.splitlines() if "-m pipeline.labels " in line]
    design = json.loads(labels[0].split("--design '")[1].split("'")[0])
    assert design["folds"] == 3 and design["design"] == "spatial_blocks"
    assert design["receptive_field"] == 5  # semi_convlstm, kernel 3, t = 4: (3 // 2) * (4 + 1)
