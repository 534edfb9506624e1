"""The config tree: params.yaml is conf/ composed, every group option composes, bad keys are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from logitlab import config, pipeline
from logitlab.errors import ConfigError

from .conftest import REPO

CONF = REPO / "conf"


# Where each group's settings land once validated: the settings of the stage that reads the group.
SETTINGS_OF_GROUP = {
    "data": lambda settings: settings["ingest"],
    "preprocess": lambda settings: settings["preprocess"].preprocess,
    "features": lambda settings: settings["feature-engineer"],
    "model": lambda settings: settings["train"],
    "mlflow": lambda settings: settings["evaluate"],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_params_yaml_is_the_composed_conf() -> None:
    assert config.load_params(REPO / "params.yaml") == config.compose(config_dir=CONF)


def test_write_params_reproduces_params_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config.write_params(tmp_path / "params.yaml")
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()


def test_write_params_with_overrides_is_what_dvc_exp_run_set_param_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc exp run -S data=circles -S features.degree=2` recomposes params.yaml with DVC's compose_and_dump,
    which write_params calls (the real `dvc exp run` is a slow test of test_pipeline_dvc.py)."""
    monkeypatch.chdir(REPO)
    overrides = ["features.degree=2", "data=circles"]
    config.write_params(tmp_path / "params.yaml", overrides)
    written = config.load_params(tmp_path / "params.yaml")
    assert written["features"]["degree"] == 2 and written["data"]["name"] == "circles"
    assert written == config.compose(overrides, config_dir=CONF)


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in ("data", "preprocess", "features", "model", "mlflow") for o in options(g) if o != "csv"],
)
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    """Each key the option's file sets reaches the validated settings of the stage that reads the group (the
    keys it inherits through `defaults` are those of another option, tested as that one)."""
    params = config.compose([f"{group}={option}"], config_dir=CONF)
    validated = SETTINGS_OF_GROUP[group](pipeline.settings(params))
    own = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    own.pop("defaults", None)
    assert own, f"{group}/{option}.yaml sets nothing"
    for key, value in own.items():
        expected = params[group][key] if isinstance(value, str) and "${" in value else value  # interpolated
        actual = validated[key] if isinstance(validated, dict) else getattr(validated, key)
        assert actual == expected, f"{group}={option}: {key}"


@pytest.mark.parametrize("overrides", [[], ["hydra/launcher=slurm"], ["hparams_search=lr_penalty"]])
def test_no_config_sets_hydras_mode(overrides: list[str]) -> None:
    """`python -m logitlab.sweep -m` answers Hydra's mode question without composing (`sweep`'s
    `_mode_known_from_the_command_line`), which holds while no config of conf/ sets `hydra.mode`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF.resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.mode is None


def test_seed_seeds_the_split_and_the_model() -> None:
    validated = pipeline.settings(config.compose(["seed=7"], config_dir=CONF))
    assert validated["preprocess"].seed == 7 and validated["train"]["random_state"] == 7


def test_csv_option_needs_path_and_target() -> None:
    with pytest.raises(ConfigError, match=r"'data.path' is missing"):
        pipeline.settings(config.compose(["data=csv"], config_dir=CONF))


def test_hparams_search_composes() -> None:
    params = config.compose(["hparams_search=lr_penalty"], config_dir=CONF)
    assert "hparams_search" not in params
    pipeline.settings(params)


@pytest.mark.parametrize(
    "override,key",
    [
        ("model.learnin_rate=0.1", "learnin_rate"),
        ("data=nope", "data"),
        ("+model.learnin_rate=0.1", "model.learnin_rate"),
        ("+preprocess.test_sise=0.1", "preprocess.test_sise"),
    ],
)
def test_unknown_keys_and_options_are_refused_by_name(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        pipeline.settings(config.compose([override], config_dir=CONF))


@pytest.mark.parametrize(
    "override,key",
    [
        ("model.learning_rate=0", "model.learning_rate"),
        ("model.learning_rate=-1", "model.learning_rate"),
        ("model.max_iter=0", "model.max_iter"),
        ("model.C=0", "model.C"),
        ("model.batch_size=0", "model.batch_size"),
        ("model.solver=adamw", "model.solver"),
        ("model.max_iter=ten", "model.max_iter"),
        ("preprocess.test_size=1.5", "preprocess.test_size"),
        ("preprocess.test_size=0", "preprocess.test_size"),
        ("preprocess.val_size=0.9", "preprocess.val_size"),
        ("features.degree=0", "features.degree"),
        ("features.degree=two", "features.degree"),
        ("seed=-3", "seed"),
        ("mlflow.enabled=maybe", "mlflow.enabled"),
    ],
)
def test_out_of_range_or_wrong_type_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        pipeline.settings(config.compose([override], config_dir=CONF))


def test_typo_in_params_yaml_names_the_key(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["features"]["degre"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"'features\.degre' is unknown"):
        pipeline.settings(config.load_params(tmp_path / "params.yaml"))


def test_missing_params_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make params"):
        config.load_params(tmp_path / "params.yaml")


def test_help_lists_every_config_group_and_option() -> None:
    from .conftest import logitlab

    shown = logitlab(["sweep", "--help"], REPO).stdout
    for group in ("data", "preprocess", "features", "model", "mlflow", "hparams_search"):
        listed = next(line for line in shown.splitlines() if line.startswith(f"{group}: "))
        assert set(listed.split(": ")[1].split(", ")) == set(options(group)), listed


def test_slurm_launcher_config_composes() -> None:
    from .conftest import logitlab

    shown = logitlab(["sweep", "hydra/launcher=slurm", "--cfg", "hydra"], REPO).stdout
    assert "SlurmLauncher" in shown and "timeout_min: 30" in shown


@pytest.mark.parametrize("value", ["nope", "A" * 32, "abc", 42])
def test_sweep_resume_is_a_parent_run_id_or_last(value: object) -> None:
    with pytest.raises(ConfigError, match=r"'sweep\.resume'"):
        config.sweep_config({"resume": value})
    assert config.sweep_config({"resume": "last"}).resume == "last"
    assert config.sweep_config({"resume": "0123456789abcdef" * 2}).resume == "0123456789abcdef" * 2
    assert config.sweep_config({}).resume is None


def test_sweep_resume_is_not_one_of_the_jobs_overrides() -> None:
    overrides = ["model.C=0.1,1", "sweep.resume=last", "++sweep.resume=last", "data=moons"]
    assert config.without_resume(overrides) == ["model.C=0.1,1", "data=moons"]
