"""Real Snakemake runs of the whole workflow on a tiny grid."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bslr.aggregate import RUNS_COLUMNS
from bslr.catalog import FIGURES, figure_names
from bslr.stats import CORRELATION_COLUMNS, EXTRA_COLUMNS
from bslr.storage import RUN_COLUMNS, read_run
from conftest import (
    REPO,
    SHARED_PACK,
    SNAKEMAKE,
    enumerated_p,
    planned_jobs,
    snakemake,
    tiny_config,
    training_jobs,
    write_config,
)

SCENARIO_FIGURES, EXPERIMENT_FIGURES = figure_names("scenario", "always"), figure_names("experiment")

ALL_FIGURES = {*SCENARIO_FIGURES, *EXPERIMENT_FIGURES}


def digests(directory):
    return {
        path.relative_to(directory): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_outputs_follow_the_contract(tiny_workflow):
    run_files = sorted((tiny_workflow / "results/runs/tiny/mnist1d/mlp").glob("*.parquet"))
    assert [path.name for path in run_files] == sorted(
        f"bs{bs}_lr{lr}_seed0.parquet" for bs in (64, 128, 256) for lr in ("0.05", "0.1", "0.15")
    )
    epochs, metadata = read_run(run_files[0])
    assert list(epochs.columns) == RUN_COLUMNS and len(epochs) == 2
    assert json.loads(metadata["settings"])["epochs"] == 2

    runs = pd.read_parquet(tiny_workflow / "results/aggregate/runs.parquet")
    assert list(runs.columns) == RUNS_COLUMNS and len(runs) == 9
    assert (runs["ratio"] == runs["batch_size"] / runs["lr"]).all()
    assert len(pd.read_parquet(tiny_workflow / "results/aggregate/epochs.parquet")) == 18

    table = pd.read_csv(tiny_workflow / "results/stats/correlations.csv")
    assert list(table.columns) == CORRELATION_COLUMNS + EXTRA_COLUMNS
    # (3 lr groups + 3 bs groups + ratio) x 3 default outcomes x 3 methods
    assert len(table) == 7 * 3 * 3
    assert set(table.loc[table["role"] == "primary", ["method", "outcome"]].itertuples(index=False)) == {
        ("spearman", "final_test_acc")
    }
    for name in ("granulated_kendall", "iso_ratio", "headline", "regression", "stratified", "divergence"):
        assert (tiny_workflow / "results/stats" / f"{name}.csv").is_file()
    # headline, divergence, regression, stratified and sign counts; then per outcome and method, two layouts
    assert (tiny_workflow / "results/tables/correlations.tex").read_text().count("\\begin{tabular}") == 5 + 3 * 3 * 2
    assert (tiny_workflow / "results/stats/correlations.md").read_text().startswith("# Correlations")

    # each figure as PDF and PNG, with the data it draws (CSV)
    figures = tiny_workflow / "results/figures/tiny"
    assert sorted(path.name for path in (figures / "mnist1d/mlp").iterdir()) == sorted(
        f"{name}.{ext}" for name in SCENARIO_FIGURES for ext in ("pdf", "png", "csv")
    )
    assert sorted(path.name for path in figures.iterdir() if path.is_file()) == sorted(
        f"{name}.{ext}" for name in EXPERIMENT_FIGURES for ext in ("pdf", "png", "csv")
    )
    assert (tiny_workflow / "results/tables/correlations.html").read_text().count("<table>") == 5 + 3 * 3 * 2
    for log in ("aggregate.log", "stats.log"):
        assert (tiny_workflow / "logs" / log).is_file()


def test_every_correlation_equals_scipy_on_the_runs_table(tiny_workflow):
    runs = pd.read_parquet(tiny_workflow / "results/aggregate/runs.parquet")
    table = pd.read_csv(tiny_workflow / "results/stats/correlations.csv")
    checked = 0
    for row in table.itertuples():
        members = runs
        if row.group.startswith("lr="):
            members = runs[runs["lr"] == float(row.group[3:])]
        elif row.group.startswith("bs="):
            members = runs[runs["batch_size"] == int(row.group[3:])]
        if members[row.outcome].nunique() < 2:
            assert pd.isna(row.statistic)
            continue
        test = {"pearson": scipy_stats.pearsonr, "spearman": scipy_stats.spearmanr, "kendall": scipy_stats.kendalltau}
        expected = test[row.method](members[row.x], members[row.outcome])
        p_value = expected.pvalue
        if row.method != "pearson" and len(members) <= 9:  # rank tests: every pairing up to 9 cells
            p_value = enumerated_p(members[row.x], members[row.outcome], row.method)
        assert row.n == len(members)
        assert row.statistic == pytest.approx(expected.statistic, abs=1e-9)
        assert row.p_value == pytest.approx(p_value, rel=1e-6, abs=1e-12)
        checked += 1
    assert checked >= len(table) // 2


def test_rerun_plans_nothing_and_figures_rebuild_identically(tiny_workflow, tmp_path):
    """Without its figures the workflow plans every figure job and nothing else; two of them, a scenario's and
    the experiment's, are then redrawn through Snakemake and compared byte for byte (that every figure is, a
    second run of the whole grid shows: test_a_second_run_of_the_grid_gives_identical_metrics_and_figures)."""
    config_path = tiny_workflow / "config.yaml"
    assert planned_jobs(tiny_workflow, config_path) == {}

    figures = tiny_workflow / "results/figures"
    before = digests(figures)
    figures.rename(tmp_path / "figures")  # moved back unchanged (and with their times) once planned
    assert set(planned_jobs(tiny_workflow, config_path)) == {"all"} | {f"figure_{name}" for name in ALL_FIGURES}
    (tmp_path / "figures").rename(figures)
    redrawn = [path for path in figures.rglob("*") if path.stem in ("heatmap", "composite") and path.is_file()]
    assert len(redrawn) == 2 * 3  # pdf, png and csv of each
    for path in redrawn:
        path.unlink()
    assert planned_jobs(tiny_workflow, config_path) == {"figure_heatmap": 1, "figure_composite": 1, "all": 1}
    snakemake(tiny_workflow, config_path, "--cores", "2")
    assert digests(figures) == before


def test_a_figure_setting_replans_that_figure_alone(tiny_workflow, tmp_path):
    changed = tiny_config()
    changed["figures"]["heatmap"]["dpi"] = 61
    config_path = write_config(tmp_path, changed)
    assert planned_jobs(tiny_workflow, config_path) == {"figure_heatmap": 1, "all": 1}

    changed = tiny_config()
    changed["analysis"] = {"outcomes": ["final_test_acc"]}
    # the statistics, and the figures that print their numbers, re-run; no training, no other figure
    printing = ("acc_vs_ratio", "train_test_vs_ratio", "composite", "group_correlations", "iso_ratio")
    assert planned_jobs(tiny_workflow, write_config(tmp_path, changed)) == {
        "stats": 1,
        **{f"figure_{name}": 1 for name in printing},
        "all": 1,
    }
    # the divergence policy decides which cells every figure of the runs draws as results
    changed["analysis"] = {"diverged": "include"}
    assert planned_jobs(tiny_workflow, write_config(tmp_path, changed)) == {
        "stats": 1,
        **{f"figure_{name}": 1 for name in ALL_FIGURES - {"training_curves"}},
        "all": 1,
    }


def test_protocol_change_retrains_and_new_learning_rates_train_alone(tiny_workflow, tmp_path):
    changed = tiny_config()
    changed["training"] = {"threads": 2}  # speed only: nothing to re-train
    assert planned_jobs(tiny_workflow, write_config(tmp_path, changed)) == {}

    # execution options (say, a smaller evaluation batch after running out of GPU memory) rewrite the
    # experiment's options file, which training jobs read but are never re-run for
    changed["training"] = {"eval_batch_size": 500, "workers": 2, "keep_checkpoints": True, "deterministic": True}
    assert planned_jobs(tiny_workflow, write_config(tmp_path, changed)) == {"execution_options": 1}
    changed["training"] = {"tensorboard": False}  # logging switched off (the grid ran with it on) re-trains nothing
    assert planned_jobs(tiny_workflow, write_config(tmp_path, changed)) == {"execution_options": 1}

    changed = tiny_config(momentum=0.9, pack={"size": 1})
    assert training_jobs(planned_jobs(tiny_workflow, write_config(tmp_path, changed))) == 9
    # the same on the command line, in Snakemake's nested form (its values arrive as strings)
    config_path = tiny_workflow / "config.yaml"
    # the fixture's config packs each batch size's three learning rates: three jobs, every run
    assert training_jobs(planned_jobs(tiny_workflow, config_path, "--config", "training={momentum: 0.9}")) == 3
    assert planned_jobs(tiny_workflow, config_path, "--config", "training={threads: 2, eval_batch_size: 1000}") == {}

    changed = tiny_config(learning_rates=[0.05, 0.1, 0.15, 0.2], pack={"size": 1})
    jobs = planned_jobs(tiny_workflow, write_config(tmp_path, changed))
    assert jobs["train_tiny_mnist1d_mlp"] == 3 and jobs["aggregate"] == 1


def test_a_changed_training_command_re_trains_nothing(tiny_workflow):
    """Runs trained by an earlier bslr, whose training rules had another command line, are not trained again:
    the workflow profile (profiles/default) leaves out Snakemake's `code` trigger, without which every
    training job would re-run. The earlier command is put back in Snakemake's records for the test."""
    config_path = tiny_workflow / "config.yaml"
    records = {}
    for path in (tiny_workflow / ".snakemake/metadata").iterdir():
        record = json.loads(path.read_text())
        if record["rule"].startswith("train_"):
            records[path] = path.read_text()
            earlier = record["code"].replace(" --progress {log.progress:q} > {log.text:q}", " > {log:q}")
            assert earlier != record["code"]
            path.write_text(json.dumps(record | {"code": earlier}))
    try:
        assert len(records) == 9  # a record per output
        assert planned_jobs(tiny_workflow, config_path) == {}
        assert training_jobs(planned_jobs(tiny_workflow, config_path, "--workflow-profile", "none")) == 3
    finally:
        for path, text in records.items():
            path.write_text(text)


def test_configfile_replaces_the_default_experiments(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    default_jobs = planned_jobs(tmp_path, None)
    # 2 models x 5 batch sizes, each job a pack of the 5 learning rates
    assert default_jobs["train_mnist1d_mnist1d_mlp"] == default_jobs["train_mnist1d_mnist1d_cnn1d"] == 5
    assert training_jobs(default_jobs) == 10 and default_jobs["prepare_mnist1d"] == 1
    other = tiny_config(batch_sizes=[32], learning_rates=[0.1])
    assert training_jobs(planned_jobs(tmp_path, write_config(tmp_path, other, "other.yaml"))) == 1


def test_packs_train_every_run_and_re_packing_a_serial_experiment_re_trains_nothing(tiny_workflow, tmp_path):
    """The shared run trained packs of three (SHARED_PACK); this trains batch size 64 one run per job (about
    40 s on 2 cores: three training jobs, each importing torch, and five plans)."""
    separate = {"separate": dict(tiny_config()["experiments"]["tiny"], batch_sizes=[64], pack={"size": 1})}
    both = tiny_config(pack=SHARED_PACK)
    both["experiments"].update(separate)
    jobs = planned_jobs(tmp_path, write_config(tmp_path, both, "both.yaml"))
    # 3 batch sizes, each a pack of the 3 learning rates; the other experiment's 3 runs one per job
    assert jobs["train_tiny_mnist1d_mlp"] == 3 and jobs["train_separate_mnist1d_mlp"] == 3
    config_path = write_config(tmp_path, {**tiny_config(), "experiments": separate})
    snakemake(tmp_path, config_path, "--cores", "2", "results/aggregate/runs.parquet")
    runs = pd.read_parquet(tmp_path / "results/aggregate/runs.parquet")
    assert len(runs) == 3 and not runs["diverged"].any()
    metrics = [column for column in RUN_COLUMNS if column != "seconds"]
    for lr in ("0.05", "0.1", "0.15"):
        packed, metadata = read_run(tiny_workflow / f"results/runs/tiny/mnist1d/mlp/bs64_lr{lr}_seed0.parquet")
        assert json.loads(metadata["packed_learning_rates"]) == [0.05, 0.1, 0.15]
        alone, _ = read_run(tmp_path / f"results/runs/separate/mnist1d/mlp/bs64_lr{lr}_seed0.parquet")
        pd.testing.assert_frame_equal(packed[metrics], alone[metrics], check_exact=True)
    log = (tiny_workflow / "logs/train/tiny/mnist1d/mlp/bs64_lr0.05-0.15_seed0.log").read_text()
    assert log.count("wrote results/runs/tiny/mnist1d/mlp/bs64_lr") == 3 and "epoch 2/2" in log
    assert not list((tiny_workflow / "results").glob("checkpoints/**/*.pt"))

    target = ["results/aggregate/runs.parquet"]
    for size in (1, 2):  # each serial run computes as if alone: how they are packed re-trains nothing
        config = tiny_config(pack={"size": size, "learner": "serial"})
        assert planned_jobs(tiny_workflow, write_config(tmp_path, config), *target) == {}
    config = tiny_config(pack={"size": 2, "learner": "stacked"})  # other arithmetic: re-trains
    assert planned_jobs(tiny_workflow, write_config(tmp_path, config), *target) == {
        "train_tiny_mnist1d_mlp_pack1": 3,
        "train_tiny_mnist1d_mlp_pack2": 3,
        "aggregate": 1,
    }


@pytest.fixture(scope="module")
def module_run(tmp_path_factory) -> Path:
    """The tiny grid a second time, run as a Snakemake module under the prefix "study" (about 1 min on 2
    cores): one run that both tests below read."""
    workdir = tmp_path_factory.mktemp("module")
    write_config(workdir, tiny_config(pack=SHARED_PACK))
    (workdir / "Snakefile").write_text(
        'configfile: "config.yaml"\n\n\n'
        f'module bslr:\n    snakefile:\n        "{REPO / "workflow/Snakefile"}"\n'
        '    config:\n        config\n    prefix:\n        "study"\n\n\n'
        "use rule * from bslr as bslr_*\n"
    )
    command = [*SNAKEMAKE, "--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir), "--cores", "2"]
    result = subprocess.run([*command, "bslr_all"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def test_bslr_as_a_snakemake_module_writes_only_under_its_prefix(module_run):
    written = {path.relative_to(module_run).parts[0] for path in module_run.rglob("*") if path.is_file()}
    assert written == {"Snakefile", "config.yaml", ".snakemake", "study"}
    study = module_run / "study"
    assert len(list((study / "results/runs").rglob("*.parquet"))) == 9
    assert (study / "resources/data/mnist1d/mnist1d.npz").is_file()
    assert (study / "logs/train/tiny/mnist1d/mlp/bs64_lr0.05-0.15_seed0.log").is_file()
    assert (study / "logs/train/tiny/mnist1d/mlp/bs64_lr0.05-0.15_seed0.progress.jsonl").is_file()
    assert len(list((study / "results/tensorboard/tiny/mnist1d/mlp").glob("bs*_lr*_seed0/events.out.tfevents.*"))) == 9
    assert (study / "results/figures/tiny/composite.pdf").is_file()


def test_a_report_of_bslr_as_a_module_reads_its_results_under_the_prefix(module_run, tmp_path):
    """The report's check finds the module's tables under its prefix ("study/results/..."), not in the host's
    working directory."""
    command = [*SNAKEMAKE, "--snakefile", str(module_run / "Snakefile"), "--directory", str(module_run)]
    report = tmp_path / "report.zip"
    result = subprocess.run([*command, "--report", str(report)], capture_output=True, text=True, timeout=900)
    assert "bslr: no report" not in result.stderr, result.stderr
    assert result.returncode == 0 and report.is_file(), result.stderr


def test_a_second_run_of_the_grid_gives_identical_metrics_and_figures(tiny_workflow, module_run):
    """The same config and seed, run again (as a module: its prefix changes paths, not what is computed)."""
    study = module_run / "study"
    metrics = [column for column in RUN_COLUMNS if column != "seconds"]
    first_runs = sorted((tiny_workflow / "results/runs").rglob("*.parquet"))
    assert len(first_runs) == 9
    for path in first_runs:
        first, _ = read_run(path)
        second, _ = read_run(study / path.relative_to(tiny_workflow))
        pd.testing.assert_frame_equal(first[metrics], second[metrics], check_exact=True)
    assert digests(tiny_workflow / "results/figures") == digests(study / "results/figures")
    first_table = (tiny_workflow / "results/stats/correlations.csv").read_bytes()
    assert first_table == (study / "results/stats/correlations.csv").read_bytes()


def test_bad_config_stops_before_any_job_with_one_message(tmp_path):
    bad = tiny_config()
    bad["experiments"]["tiny"]["learning_rates"] = {"start": 0.1, "stop": 0.2, "step": -0.01}
    result = snakemake(tmp_path, write_config(tmp_path, bad), "--cores", "1", check=False)
    assert result.returncode != 0
    assert "invalid configuration: config key experiments.tiny.learning_rates" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_lint_is_clean():
    result = snakemake(REPO, None, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_report_bundles_every_figure_and_the_table(tiny_workflow):
    import zipfile

    report = tiny_workflow / "report.zip"
    result = snakemake(tiny_workflow, tiny_workflow / "config.yaml", "--report", str(report))
    assert "WARNING/2" not in result.stderr and "ERROR/3" not in result.stderr  # docutils, in every caption before
    bundle = zipfile.ZipFile(report)
    names = [name.rsplit("/", 1)[-1] for name in bundle.namelist()]
    for figure in ALL_FIGURES:
        assert f"{figure}.png" in names
    assert {"correlations.csv", "headline.csv", "regression.csv", "iso_ratio.csv", "correlations.html"} <= set(names)
    (page,) = [name for name in bundle.namelist() if name.endswith("report.html")]
    text = bundle.read(page).decode()
    assert "System Message" not in text and "Experiment tiny" in text and "MLP on MNIST-1D" in text
    assert all(f'"labels": {{"figure": "{FIGURES[name].title}"}}' in text for name in ALL_FIGURES)


def test_a_report_of_results_another_config_wrote_last_is_refused_with_the_fix(tiny_workflow, tmp_path):
    """The aggregate, statistics and figures have one path whatever the config: after another config ran in
    the same directory (here one batch size of the grid, aggregated without training), `--report` of the
    first would bundle that config's tables beside figures drawn from older ones. It stops with one line
    instead, and so it does while this config's figures are older than its runs table. On a copy of the
    shared workflow."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_workflow, workdir, symlinks=True)
    config_path = workdir / "config.yaml"
    other = write_config(tmp_path, tiny_config(batch_sizes=[64], pack=SHARED_PACK), "other.yaml")
    snakemake(workdir, other, "--cores", "1", "results/aggregate/runs.parquet")
    report = workdir / "refused.zip"
    refused = snakemake(workdir, config_path, "--report", str(report), check=False)
    assert refused.returncode != 0 and not report.exists()
    assert (
        "bslr: no report: results/aggregate/runs.parquet holds another config's runs (3 of experiments tiny; "
        "this config has 9): run the workflow with this config first (snakemake --cores N, the same config "
        "files), which aggregates, tests and draws its runs, then --report"
    ) in refused.stderr
    assert "Traceback" not in refused.stderr
    snakemake(workdir, config_path, "--cores", "1", "results/aggregate/runs.parquet")  # its runs again
    refused = snakemake(workdir, config_path, "--report", str(report), check=False)
    assert refused.returncode != 0 and not report.exists()
    assert "of this config's tables and figures are missing or older than its runs table (first: " in refused.stderr


def test_methods_without_kendall_still_write_every_statistics_output(tiny_workflow, tmp_path):
    copy = tmp_path / "workflow"  # the shared run's results and Snakemake's records of them, left as they are
    shutil.copytree(tiny_workflow, copy, symlinks=True)
    changed = tiny_config(pack=SHARED_PACK)
    changed["analysis"] = {"methods": ["spearman"]}
    config_path = write_config(tmp_path, changed)
    assert planned_jobs(copy, config_path, "results/stats/correlations.csv") == {"stats": 1}
    snakemake(copy, config_path, "--cores", "2", "results/stats/correlations.csv")
    table = pd.read_csv(copy / "results/stats/correlations.csv")
    assert set(table["method"]) == {"spearman"}
    assert len(pd.read_csv(copy / "results/stats/granulated_kendall.csv")) == 3


def test_trained_results_are_not_replaced_without_the_switch(tiny_workflow, tmp_path):
    """A changed protocol (momentum 0.9 from the command line) would re-train all nine runs to the same
    paths: the dry run says how many and by what change, a real run stops before any job and touches
    nothing, and `replace_results=true` lets it re-train (one pack of three runs here, about 10 s). On a
    copy of the shared workflow, which stays as it was."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_workflow, workdir, symlinks=True)
    config_path, before = workdir / "config.yaml", digests(workdir / "results")
    momentum = ("--config", "training={momentum: 0.9}")
    dry = snakemake(workdir, config_path, "-n", *momentum)
    assert (
        "bslr: warning: 9 trained runs would be re-trained to the same paths, replacing their results, because"
        in dry.stderr
    )
    assert "(momentum: 0.0 -> 0.9)" in dry.stderr and "a real run stops unless replace_results: true" in dry.stderr
    refused = snakemake(workdir, config_path, "--cores", "1", *momentum, check=False)
    assert (
        refused.returncode != 0
        and "Nothing was run. To replace them: snakemake --config replace_results=true" in refused.stderr
    )
    assert digests(workdir / "results") == before
    target = "results/runs/tiny/mnist1d/mlp/bs64_lr0.1_seed0.parquet"
    snakemake(
        workdir, config_path, "--cores", "1", target, "--config", "training={momentum: 0.9}", "replace_results=true"
    )
    settings = json.loads(read_run(workdir / target)[1]["settings"])
    assert settings["momentum"] == 0.9
