"""Run names for the MLflow UI's runs table: what the sweep varies, short and distinct (sweeps.run_name)."""

from __future__ import annotations

import pytest

from logitlab.tracking.sweeps import RUN_NAME_CHARS, Parent, run_name


def parent(varied: list[str], numbered: bool = False) -> Parent:
    return Parent("run", "sweep", "sqlite:///x.db", "1", "circles", varied, numbered)


@pytest.mark.parametrize(
    ("varied", "numbered", "overrides", "expected"),
    [
        (
            ["model.learning_rate", "features.degree"],
            False,
            ["data=circles", "model.learning_rate=0.1", "features.degree=2", "model.max_iter=200"],
            "lr=0.1 degree=2",
        ),
        (  # an Optuna trial: numbers to three significant digits, its number last
            ["model.learning_rate", "model.C", "model.penalty", "features.degree"],
            True,
            [
                "model.learning_rate=0.011756010900231853",
                "model.C=0.13296521457299515",
                "model.penalty=l2",
                "features.degree=3",
                "hparams_search=lr_penalty",
            ],
            "lr=0.0118 C=0.133 penalty=l2 degree=3 #3",
        ),
        (["data", "model"], False, ["data=moons", "model=adam"], "data=moons model=adam"),
        (["model.C", "svm.C"], False, ["model.C=1", "svm.C=1e-05"], "model.C=1 svm.C=1e-05"),  # same last part
        ([], False, ["model.C=1"], "defaults"),  # nothing varies
    ],
)
def test_a_child_is_named_by_what_its_sweep_varies(
    varied: list[str], numbered: bool, overrides: list[str], expected: str
) -> None:
    assert run_name(parent(varied, numbered), 3, overrides) == expected


def test_a_single_run_is_named_by_its_overrides_and_names_stay_short() -> None:
    assert run_name(None, 0, ["data=moons", "+model.verbose=1"]) == "data=moons verbose=1"
    keys = [f"k{i}.value{i}" for i in range(8)]
    long = run_name(parent(keys), 0, [f"{key}=123456" for key in keys])
    assert len(long) == RUN_NAME_CHARS and long.endswith("…")
    numbered = run_name(parent(keys, numbered=True), 12, [f"{key}=123456" for key in keys])
    assert len(numbered) == RUN_NAME_CHARS and numbered.endswith("… #12"), "the job number survives"
