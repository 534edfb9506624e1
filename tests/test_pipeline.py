"""The stage declarations and their executors: dvc.yaml is generated from the declarations, the sweep
executor's cache follows the same declarations (params, inputs, source files), and the `local` launcher
composes what Hydra composes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import setup_globals
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from hydra_plugins.logitlab_launcher.launcher import CachingLoader, Launcher
from logitlab import config, dvc_stage, io, pipeline, plots_page
from logitlab.errors import ConfigError, LogitlabError
from logitlab.stage import Stage
from logitlab.sweeps import executor

from .conftest import REPO, store_uri

CONF = REPO / "conf"
FAST = ["model.max_iter=50", "model.tol=0"]


# ------------------------------------------------------------------------------------------- dvc.yaml
def test_dvc_yaml_is_generated_from_the_stage_declarations() -> None:
    assert (REPO / "dvc.yaml").read_text() == pipeline.dvc_yaml(), "dvc.yaml is stale: run `make pipeline`"


@pytest.mark.parametrize("stage", pipeline.STAGES, ids=lambda stage: stage.name)
def test_dvc_yaml_declares_each_stage_as_the_executors_run_it(stage: Stage) -> None:
    """DVC's view of a stage (deps, params, outs) is what the sweep executor hashes and resolves."""
    entry = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage.name]
    assert entry["cmd"] == f"python -m {stage.module}"
    assert set(entry["deps"]) == {*stage.sources, *map(str, stage.inputs.values())}
    assert entry["params"] == list(stage.params)
    outs = [next(iter(out)) for out in entry.get("outs", []) + entry.get("metrics", [])]
    assert sorted(outs) == sorted(str(out.path) for out in stage.outputs.values())
    for source in stage.sources:
        assert (REPO / source).exists(), source


def test_every_input_is_an_earlier_stage_output_or_external_data() -> None:
    produced: set[Path] = set()
    for stage in pipeline.STAGES:
        for path in stage.inputs.values():
            assert path in produced or path.parts[:2] == ("data", "raw"), (stage.name, path)
        produced |= {out.path for out in stage.outputs.values()}


def broken(value: object) -> object:
    """A section no stage accepts: an unknown key in a mapping, a negative seed."""
    return {**value, "typo_key": 1} if isinstance(value, dict) else -3


def test_each_stage_validates_only_its_own_sections() -> None:
    params = config.compose(config_dir=CONF)
    for stage in pipeline.STAGES:
        own = stage.settings(config.sections(params, stage.params))
        others_broken = {name: value if name in stage.params else broken(value) for name, value in params.items()}
        assert stage.settings(others_broken) == own, stage.name  # what it does not declare, it does not read
        for name in stage.params:  # and what it declares, it validates
            with pytest.raises(ConfigError, match=rf"'{name}[.']"):
                stage.settings({**params, name: broken(params[name])})


# ------------------------------------------------------------------------------------ sweep executor
@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root whose source files the cache keys hash (a copy: the test edits it)."""
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def job_config(*overrides: str) -> executor.JobConfig:
    return executor.JobConfig.of(config.compose([*FAST, *overrides], config_dir=CONF))


def test_editing_a_stage_source_file_recomputes_that_stage_and_what_follows(root: Path) -> None:
    first = executor.run_job(job_config(), root / "job0", root=root)
    assert first.cache == {"ingest": "miss", "preprocess": "miss", "feature-engineer": "miss"}
    assert executor.run_job(job_config(), root / "job1", root=root).cache == dict.fromkeys(first.cache, "hit")
    transforms = root / "src/logitlab/transforms.py"  # dvc.yaml: a dependency of preprocess and feature-engineer
    transforms.write_text(transforms.read_text() + "\n# a fix\n")
    edited = executor.run_job(job_config(), root / "job2", root=root)
    assert edited.cache == {"ingest": "hit", "preprocess": "miss", "feature-engineer": "miss"}
    assert edited.metrics == first.metrics


def test_the_shared_stages_made_ahead_are_the_jobs_and_a_bad_config_makes_none(root: Path) -> None:
    """`warm_shared` (the figure helper's work while a tracked sweep opens its store) makes the entries the
    job then finds, and nothing else; a config the job would refuse is left to the job, silently."""
    params = config.compose(FAST, config_dir=CONF)
    executor.warm_shared(params, root)
    assert sorted(path.name for path in (root / ".cache" / "logitlab").iterdir() if path.name != "locks") == [
        "feature-engineer",
        "ingest",
        "preprocess",
    ]
    assert not (root / "models").exists() and not (root / "reports").exists()
    job = executor.run_job(executor.JobConfig.of(params), root / "job", root=root)
    assert job.cache == {"ingest": "hit", "preprocess": "hit", "feature-engineer": "hit"}
    elsewhere = root / "other"
    elsewhere.mkdir()
    executor.warm_shared({**params, "preprocess": {**params["preprocess"], "test_size": 1.5}}, elsewhere)
    assert not (elsewhere / ".cache").exists()


def test_an_entry_a_killed_process_was_making_is_removed_when_the_entry_is_made(root: Path) -> None:
    """A cache entry is made in a temporary folder renamed into place: one a killed process left (a terminated
    warm-up, a SIGKILL) never becomes the entry, and goes when the entry is next made; a live writer's stays."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    memo = executor.Memo(root)
    left = memo.entry("ingest", "k" * 20).with_name(f".{'k' * 20}.{gone.stdout.strip()}.abcd1234.tmp")
    alive = left.with_name(f".{'k' * 20}.{os.getpid()}.efgh5678.tmp")
    for folder in (left, alive):
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "half.parquet").write_bytes(b"PAR1")
    entry = memo.get_or_compute("ingest", "k" * 20, lambda tmp: (tmp / "made.txt").write_text("made"))
    assert memo.status["ingest"] == "miss" and (entry / "made.txt").read_text() == "made"
    assert not left.exists() and alive.exists()
    assert sorted(path.name for path in entry.parent.iterdir()) == sorted([entry.name, alive.name])


def test_a_param_recomputes_its_stage_and_what_follows_only(root: Path) -> None:
    executor.run_job(job_config(), root / "job0", root=root)
    assert executor.run_job(job_config("features.degree=2"), root / "job1", root=root).cache == {
        "ingest": "hit",
        "preprocess": "hit",
        "feature-engineer": "miss",
    }
    assert executor.run_job(job_config("seed=7"), root / "job2", root=root).cache == {
        "ingest": "hit",
        "preprocess": "miss",
        "feature-engineer": "miss",
    }


def test_a_user_csv_is_part_of_the_ingest_key(root: Path) -> None:
    csv = root / "data.csv"
    csv.write_text("a,b,label\n" + "\n".join(f"{i % 7},{i % 3},{'yes' if i % 2 else 'no'}" for i in range(60)))
    overrides = ["data=csv", f"data.path={csv}", "data.target=label"]
    executor.run_job(job_config(*overrides), root / "job0", root=root)
    csv.write_text(csv.read_text().replace("yes", "YES"))
    assert executor.run_job(job_config(*overrides), root / "job1", root=root).cache["ingest"] == "miss"


def test_a_job_writes_the_layout_dvc_repro_writes(root: Path) -> None:
    job = executor.run_job(job_config(), root / "job", root=root)
    for stage in pipeline.STAGES:
        for name, out in stage.outputs.items():
            located = job.files[stage.name].outputs[name]
            assert located.exists(), located
            assert located.as_posix().endswith(out.path.as_posix())
    assert (root / "job/models/model.npz").is_file() and (root / "job/reports/metrics.json").is_file()
    record = executor.record(job)
    assert record.dataset.digest == io.read_json(job.files["feature-engineer"].outputs["report"])["data_hash"]
    assert {path.name for path in record.artifacts} >= {"metrics.json", "cost_history.csv", "figures", "plots"}


def test_the_dvc_stage_commands_give_what_a_sweep_job_gives_tracked_as_one_repro_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `dvc repro` runs, without DVC (whose real runs are the slow tests of test_pipeline_dvc.py): each
    stage's command (`python -m logitlab.stages.<stage>`, i.e. `dvc_stage.execute`) in dvc.yaml's order, in a
    project copy. It reaches the seed guides' 90 %, writes every declared output, gives the same metrics and
    model bytes as a sweep job on the same params, and is tracked as one MLflow run tagged as a dvc repro."""
    for name in ("MLFLOW_TRACKING_URI", "LOGITLAB_ROOT", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)
    for stage in pipeline.STAGES:
        dvc_stage.execute(stage)
    for stage in pipeline.STAGES:
        for out in stage.outputs.values():
            assert (project / out.path).exists(), out.path
    metrics = io.read_json(project / "reports/metrics.json")
    assert metrics["test_accuracy"] == 0.9
    job = executor.run_job(
        executor.JobConfig.of(config.load_params(project / "params.yaml")), project / "job", root=project
    )
    assert io.read_json(project / "job/reports/metrics.json") == metrics == job.metrics
    for name in ("model.npz", "transforms.json"):
        assert (project / "job/models" / name).read_bytes() == (project / "models" / name).read_bytes(), name

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(project))
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == 0.9
    assert run.data.tags["logitlab.entry"] == "dvc repro" and "git_commit" in run.data.tags
    assert {f"dvc.stage.{stage.name}" for stage in pipeline.STAGES[:-1]} <= set(run.data.tags)


def test_every_declared_plot_exists_after_a_run_even_where_it_cannot_be_drawn(root: Path) -> None:
    """30 raw features: no decision boundary to draw, so a placeholder saying why (DVC would fail on a missing
    plot without naming it)."""
    job = executor.run_job(job_config("data=breast_cancer"), root / "job", root=root)
    for path in plots_page.plot_files(pipeline.PLOTS):
        assert (root / "job" / path).is_file(), path
    figure = job.files["evaluate"].outputs["figures"] / "decision_boundary.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_make_plots_before_a_run_names_the_missing_plot_file(tmp_path: Path) -> None:
    with pytest.raises(
        LogitlabError, match=r"^plot file 'reports/cost_history.csv' is missing; run `make repro` first$"
    ):
        plots_page.write(tmp_path)
    assert not (tmp_path / plots_page.OUT_DIR).exists()


# ------------------------------------------------------------------------------------------ launcher
@pytest.fixture
def launcher() -> Iterator[Launcher]:
    """The `local` launcher set up as Hydra sets it up for a multirun over conf/."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base=None):
        setup_globals()
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", [], run_mode=RunMode.MULTIRUN)
        launcher = Launcher()
        context = HydraContext(loader, callbacks=None)  # type: ignore[arg-type]
        launcher.setup(hydra_context=context, task_function=lambda cfg: 0, config=master)
        yield launcher


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.learning_rate=0.5"],
        ["data=circles", "model.C=10", "features.degree=2"],
        ["model=adam", "model.learning_rate=0.01", "seed=3"],
        ["features=poly2", "++model.verbose=1", "hydra.job.name=x"],
        ["~model.l1_ratio", "+extra=1", "model.C=2"],
        ["data=csv", "data.path=a.csv", "data.target=y", "data.drop=[id,name]"],
    ],
)
def test_local_launcher_composes_what_hydra_composes(launcher: Launcher, overrides: list[str]) -> None:
    assert launcher.config is not None and launcher.hydra_context is not None
    cached = launcher.hydra_context.config_loader
    assert type(cached).__name__ == CachingLoader.__name__  # Hydra re-imports plugin modules: compare names
    cached.load_sweep_config(launcher.config, ["features.degree=3"])  # the cache holds another config too
    ours = cached.load_sweep_config(launcher.config, overrides)
    hydras = cached.loader.load_sweep_config(launcher.config, overrides)
    for cfg in (ours, hydras):
        OmegaConf.set_readonly(cfg, False)
        cfg.hydra.runtime.cwd = os.getcwd()
    assert OmegaConf.to_container(ours, resolve=False) == OmegaConf.to_container(hydras, resolve=False)


def test_the_launcher_takes_the_composition_the_sweepers_check_made_once(launcher: Launcher) -> None:
    """The basic sweeper composes every job of a batch to fail early, then drops it: the launcher takes that
    composition instead of making it again, and only once (a job launched again gets a new one)."""
    assert launcher.config is not None and launcher.hydra_context is not None
    cached = launcher.hydra_context.config_loader
    checked = cached.load_sweep_config(master_config=launcher.config, sweep_overrides=["model.C=3"])
    assert cached.take_sweep_config(launcher.config, ["model.C=3"]) is checked
    again = cached.take_sweep_config(launcher.config, ["model.C=3"])
    assert again is not checked and again.model.C == 3
    assert cached.take_sweep_config(launcher.config, ["model.C=4"]).model.C == 4  # never checked


@pytest.mark.parametrize("fails", [False, True])
def test_a_job_runs_as_hydras_run_job_runs_it(launcher: Launcher, tmp_path: Path, fails: bool) -> None:
    """`_run_job` copies the config once where Hydra's `run_job` copies it four times: the same `.hydra/` files,
    the same config for the task (without the Hydra node, struct as Hydra's), the same Hydra config while it
    runs, the same job return, and Hydra's config of the sweep restored after."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobStatus, run_job

    from hydra_plugins.logitlab_launcher.launcher import _run_job

    assert launcher.config is not None and launcher.hydra_context is not None
    context = HydraContext(launcher.hydra_context.config_loader, Callbacks())
    seen: dict[str, dict] = {}

    def task(name: str):
        def run(cfg):
            hydra_cfg = HydraConfig.get()
            seen[name] = {
                "task": OmegaConf.to_container(cfg, resolve=False),
                "struct": OmegaConf.is_struct(cfg),
                "hydra": OmegaConf.to_container(hydra_cfg, resolve=False),
                "folder": hydra_cfg.runtime.output_dir,
            }
            if fails:
                raise ValueError("the task failed")
            return cfg.model.C

        return run

    outcomes = {}
    before = HydraConfig.instance().cfg
    for name, runner in (("hydra", run_job), ("ours", None)):
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, ["model.C=7", "seed=2"])
        OmegaConf.set_readonly(sweep_config.hydra, False)
        sweep_config.hydra.sweep.dir = str(tmp_path / name)
        sweep_config.hydra.job.id = sweep_config.hydra.job.num = 3
        if runner is None:
            outcomes[name] = _run_job(context, task(name), sweep_config)
        else:
            outcomes[name] = runner(
                hydra_context=context,
                task_function=task(name),
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        assert HydraConfig.instance().cfg is before
    hydras, ours = outcomes["hydra"], outcomes["ours"]

    def local(value):  # the job folders differ by name only
        return yaml.safe_load(yaml.safe_dump(value).replace(str(tmp_path / "ours"), str(tmp_path / "hydra")))

    assert seen["ours"]["folder"] == str(tmp_path / "ours" / "3")
    assert local(seen["ours"]) == seen["hydra"] and seen["ours"]["struct"]
    for file in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        text = (tmp_path / "ours" / "3" / ".hydra" / file).read_text()
        assert (
            text.replace(str(tmp_path / "ours"), str(tmp_path / "hydra"))
            == (tmp_path / "hydra" / "3" / ".hydra" / file).read_text()
        )
    assert ours.status == hydras.status == (JobStatus.FAILED if fails else JobStatus.COMPLETED)
    if fails:
        assert type(ours._return_value) is type(hydras._return_value) is ValueError
    else:
        assert ours.return_value == hydras.return_value == 7
    assert ours.overrides == hydras.overrides == ["model.C=7", "seed=2"]
    assert ours.working_dir == hydras.working_dir == os.getcwd()
    assert ours.task_name == hydras.task_name
    assert OmegaConf.to_container(ours.cfg) == OmegaConf.to_container(hydras.cfg)
    assert local(OmegaConf.to_container(ours.hydra_cfg)) == OmegaConf.to_container(hydras.hydra_cfg)
