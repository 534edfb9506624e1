"""The bad-input catalogue: each mistake ends in one line naming the key, file or column, a non-zero exit,
no traceback, and the previous outputs untouched. docs/reliability.md lists every case and its test."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from .conftest import BASE_ENV, logitlab, make_project, run

pytestmark = pytest.mark.timeout(600)

CSV_CASES = {
    "empty": "",
    "no_target": "a,b\n1,2\n3,4\n",
    "one_class": "a,label\n" + "".join(f"{i},x\n" for i in range(30)),
    "ids": "user,a,label\n" + "".join(f"u{i},{i % 7},{'ab'[i % 2]}\n" for i in range(60)),
    "all_missing": "a,b,label\n" + "".join(f"{i},,{'ab'[i % 2]}\n" for i in range(60)),
    "inf": "a,b,label\n" + "".join(f"{i},{'inf' if i == 3 else i},{'ab'[i % 2]}\n" for i in range(60)),
    "tiny": "a,label\n1,a\n2,b\n3,a\n4,b\n5,a\n",
    "marker": "a,b,label\n" + "".join(f"{i},{'?' if i % 20 == 0 else i},{'ab'[i % 2]}\n" for i in range(60)),
    "good": "a,b,label\n" + "".join(f"{i},{i % 5},{'ab'[i % 2]}\n" for i in range(60)),
    "long": "a,b,label\n" + "".join(f"{i},{i % 5},{'ab'[i % 2]}\n" for i in range(300)),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("bad") / "project")
    for name, content in CSV_CASES.items():
        (project / "data/raw/external" / f"{name}.csv").write_text(content)
    cities = "city,x,label\n" + "".join(f"{c},{i},{'ab'[i % 2]}\n" for i, c in enumerate(["Zürich", "Genève"] * 40))
    (project / "data/raw/external/latin1.csv").write_bytes(cities.encode("latin-1"))
    (project / "data/raw/external/utf16.csv").write_bytes(cities.encode("utf-16"))
    return project


def csv(name: str, *extra: str) -> list[str]:
    return ["data=csv", f"data.path=data/raw/external/{name}.csv", "data.target=label", *extra]


def assert_one_line_error(done, *needles: str) -> str:
    assert done.returncode != 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


CASES = [
    ("unknown key", ["model.learnin_rate=0.1"], ["model.learnin_rate"]),
    ("unknown group option", ["data=nope"], ["data/nope", "Available options"]),
    ("learning_rate <= 0", ["model.learning_rate=0"], ["model.learning_rate"]),
    ("max_iter < 1", ["model.max_iter=0"], ["model.max_iter"]),
    ("C <= 0", ["model.C=-1"], ["model.C"]),
    ("test_size outside (0, 1)", ["preprocess.test_size=1.5"], ["preprocess.test_size", "(0, 1)"]),
    ("batch_size < 1", ["model=minibatch", "model.batch_size=0"], ["model.batch_size"]),
    ("degree < 1", ["features.degree=0"], ["features.degree"]),
    ("wrong type", ["model.max_iter=many"], ["model.max_iter"]),
    ("unknown solver", ["model.solver=adamw"], ["model.solver"]),
    ("csv path not set", ["data=csv", "data.target=label"], ["data.path"]),
    ("missing CSV", csv("nope"), ["data.path", "nope.csv", "not found"]),
    ("empty CSV", csv("empty"), ["empty.csv", "empty"]),
    ("no target column", csv("no_target"), ["data.target", "'label'", "no_target.csv"]),
    ("one class", csv("one_class"), ["one class"]),
    ("positive_label absent", csv("good", "data.positive_label=zzz"), ["data.positive_label", "zzz"]),
    ("ID column", csv("ids"), ["column 'user'", "data.drop"]),
    ("all-missing column", csv("all_missing"), ["column 'b'"]),
    ("infinite values", csv("inf"), ["column 'b'", "infinite"]),
    ("undeclared missing marker", csv("marker"), ["column 'b'", "non-numeric values ['?']", "data.na_values"]),
    ("too small for the split", csv("tiny"), ["too small", "preprocess.test_size"]),
    ("chunk_rows too small", csv("good", "data.chunk_rows=5"), ["data.chunk_rows", ">= 100"]),
    ("CSV not in UTF-8", csv("latin1"), ["latin1.csv", "not utf-8: byte 0xfc at offset 14", "data.encoding=latin-1"]),
    ("UTF-16 CSV", csv("utf16"), ["utf16.csv", "looks like UTF-16", "data.encoding=utf-16"]),
    ("unknown encoding", csv("good", "data.encoding=latin-9000"), ["data.encoding", "latin-9000"]),
    ("expansion too big", ["data=breast_cancer", "features.degree=6"], ["features.degree=6", "features.max_features"]),
    (
        "expansion beyond memory",
        ["data=breast_cancer", "features.degree=8", "features.max_features=1000000000"],
        ["features.degree=8", "GB of memory", "available"],
    ),
    ("unknown include column", ["features.degree=2", "features.include=[nope]"], ["features.include", "nope"]),
    ("diverging run", ["model.learning_rate=1e7"], ["diverged", "learning_rate", "smaller"]),
    ("unknown sweep metric", ["sweep.metric=val_f2"], ["sweep.metric", "val_f2"]),
    ("cv metric without folds", ["sweep.metric=cv_accuracy_mean"], ["sweep.metric", "preprocess.cv_folds"]),
    ("cv_folds < 2", ["preprocess.cv_folds=1"], ["preprocess.cv_folds", ">= 2"]),
    ("cv_folds above a class's rows", csv("good", "preprocess.cv_folds=30"), ["preprocess.cv_folds=30", "lower"]),
    (
        "cv_folds with streamed data",
        csv("long", "data.chunk_rows=100", "preprocess.numeric_impute=mean", "preprocess.cv_folds=3"),
        ["preprocess.cv_folds", "data.chunk_rows"],
    ),
    ("history_points < 0", ["mlflow.history_points=-1"], ["mlflow.history_points", ">= 0"]),
    ("sonar file not downloaded", ["data=sonar"], ["data/raw/external/sonar.csv", "not found"]),
    ("output outside the project", ["hydra.run.dir=/tmp/logitlab-elsewhere"], ["hydra.run.dir", "outside the project"]),
    ("conflicting Hydra flags", ["-m", "--cfg", "job"], ["Only one of"]),
]


@pytest.mark.parametrize("overrides,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sweep_cli_bad_input(project: Path, overrides: list[str], needles: list[str]) -> None:
    done = logitlab(["sweep", "mlflow=off", "model.max_iter=200", *overrides], project, check=False)
    assert_one_line_error(done, *needles)
    assert done.returncode == 2


def test_a_csv_not_in_utf8_runs_with_its_data_encoding(project: Path) -> None:
    """The fix the error names works: the text column's values come through as written."""
    overrides = ["mlflow=off", "model.max_iter=50", "hydra.run.dir=outputs/latin1"]
    done = logitlab(["sweep", *overrides, *csv("latin1", "data.encoding=latin-1")], project)
    assert "test_accuracy=" in done.stdout + done.stderr
    transforms = json.loads((project / "outputs/latin1/models/transforms.json").read_text())
    assert transforms["preprocessor"]["categorical"]["city"]["categories"] == ["Genève", "Zürich"]


def test_a_sweep_ranking_by_a_validation_metric_under_cross_validation_is_refused(project: Path) -> None:
    """With preprocess.cv_folds the validation split joins training: ranking by val_* would rank nothing."""
    done = logitlab(["sweep", "-m", "mlflow=off", "preprocess.cv_folds=3", "model.C=0.5,2"], project, check=False)
    error = assert_one_line_error(done, "none of its 2 jobs finished", "sweep.metric", "cv_accuracy_mean")
    assert done.returncode == 2, error


def test_a_slurm_sweep_with_no_cluster_configured_says_to_run_make_slurm(tmp_path: Path) -> None:
    """A fresh shell (no SLURM_* variables), no system SLURM config, no `make slurm` in this project: one line
    saying what to run, before any job and before the sweep's parent run."""
    from logitlab.cluster import SYSTEM_CONFIGS

    if any(path.is_file() for path in SYSTEM_CONFIGS):
        pytest.skip("this machine has a SLURM configuration of its own")
    project = make_project(tmp_path / "project")
    fresh_shell = {key: value for key, value in BASE_ENV.items() if not key.startswith("SLURM")}
    command = [sys.executable, "-m", "logitlab.sweep", "-m", "hydra/launcher=slurm", "model.C=0.1,1,10"]
    done = subprocess.run(command, cwd=project, env=fresh_shell, capture_output=True, text=True, timeout=300)
    line = assert_one_line_error(done, "hydra/launcher=slurm", "make slurm", "SLURM_CONF", str(project / ".slurm"))
    assert done.returncode == 2, line
    assert not (project / "mlflow.db").exists() and not list(project.glob("multirun/*/*/*/job.json"))


def test_slurm_conf_wins_over_the_project_cluster_which_is_found_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logitlab.cluster import SYSTEM_CONFIGS, use_slurm_config
    from logitlab.errors import ConfigError

    if any(path.is_file() for path in SYSTEM_CONFIGS):
        pytest.skip("this machine has a SLURM configuration of its own")
    (tmp_path / ".slurm").mkdir()
    (tmp_path / ".slurm" / "slurm.conf").write_text("ClusterName=logitlab\n")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "gone.conf"))
    with pytest.raises(ConfigError, match=r"^SLURM_CONF: .*gone.conf does not exist"):
        use_slurm_config(tmp_path)
    monkeypatch.delenv("SLURM_CONF")
    use_slurm_config(tmp_path)
    assert Path(os.environ["SLURM_CONF"]) == tmp_path / ".slurm" / "slurm.conf"


def test_debug_mode_shows_the_traceback(project: Path) -> None:
    done = logitlab(["sweep", "mlflow=off", "model.C=-1"], project, env={"LOGITLAB_DEBUG": "1"}, check=False)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_unreachable_tracking_server_fails_fast_naming_the_uri(project: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    done = logitlab(["sweep", "model.max_iter=50"], project, env=env, check=False)
    assert_one_line_error(done, "http://127.0.0.1:9", "unreachable")
    multirun = logitlab(["sweep", "-m", "model.max_iter=50,60"], project, env=env, check=False)
    assert_one_line_error(multirun, "http://127.0.0.1:9")


class _SlowHealth(http.server.BaseHTTPRequestHandler):
    """A tracking server that is up but busy: its first /health answers after `delays[0]` s, the next sooner."""

    delays: list[float] = []

    def do_GET(self) -> None:
        time.sleep(self.delays.pop(0) if self.delays else 0)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("delays", "reachable"), [([1.0, 0.0], True), ([1.0, 1.0], False)])
def test_a_busy_server_is_asked_again_before_it_is_called_unreachable(
    delays: list[float], reachable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logitlab.errors import TrackingError
    from logitlab.tracking import store

    monkeypatch.setattr(store, "HEALTH_TIMEOUTS_S", (0.3, 0.3))
    monkeypatch.setattr(_SlowHealth, "delays", list(delays))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHealth) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            if reachable:
                store._check_reachable(uri)
            else:
                with pytest.raises(TrackingError, match=f"{uri} is unreachable .*timed out"):
                    store._check_reachable(uri)
        finally:
            server.shutdown()


class _CutOff(http.server.BaseHTTPRequestHandler):
    """A tracking server killed while it answers: the headers promise a body that never comes."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5807")
        self.end_headers()
        self.wfile.write(b"{")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_dies_mid_answer_is_an_outage() -> None:
    """CI saw it: the server killed while sending a response body is `Connection broken: IncompleteRead`
    (requests' ChunkedEncodingError inside MLflow's error), which must count as the server gone (the sweep
    stops in one line, resumable), not as a job's bug with a traceback."""
    from mlflow.tracking import MlflowClient

    from logitlab.tracking import store

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOff) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with store.one_attempt(), pytest.raises(Exception) as raised:
                MlflowClient(f"http://127.0.0.1:{server.server_address[1]}").get_run("0" * 32)
        finally:
            server.shutdown()
    assert "IncompleteRead" in str(raised.value)
    assert store.unreachable(raised.value), repr(raised.value)
    assert store.outage(raised.value).startswith("ChunkedEncodingError after ")


def test_unreachable_tracking_server_with_required_false_keeps_training(project: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    done = logitlab(["sweep", "model.max_iter=50", "mlflow.required=false"], project, env=env)
    assert "tracking is off" in done.stdout + done.stderr
    assert "test_accuracy=" in done.stdout + done.stderr


# ------------------------------------------------------------------- through DVC: outputs untouched
def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and ".dvc" not in p.parts
        and ".git" not in p.parts
        and "mlflow.db" not in p.name
        and "mlartifacts" not in p.parts
        and ".cache" not in p.parts
    }


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("dvcbad") / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["mlflow"]["enabled"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], project)
    return project


@pytest.mark.parametrize(
    "section,key,value,needles",
    [
        ("model", "learnin_rate", 0.1, ["model.learnin_rate", "unknown"]),
        ("model", "learning_rate", 1e7, ["diverged", "learning_rate"]),
        ("preprocess", "val_size", 0.95, ["preprocess.val_size"]),
        ("features", "degree", "two", ["features.degree"]),
    ],
)
def test_dvc_repro_bad_params_leave_outputs_untouched(reproduced: Path, section: str, key: str, value, needles) -> None:
    params_file = reproduced / "params.yaml"
    original = params_file.read_text()
    before = digest(reproduced / "models") | digest(reproduced / "reports") | digest(reproduced / "data")
    params = yaml.safe_load(original)
    params[section][key] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        done = run(["dvc", "repro"], reproduced, check=False)
        assert_one_line_error(done, *needles)
        after = digest(reproduced / "models") | digest(reproduced / "reports") | digest(reproduced / "data")
        assert after == before
    finally:
        params_file.write_text(original)


def test_corrupt_saved_model_is_refused_naming_the_file(reproduced: Path) -> None:
    model = reproduced / "models" / "model.npz"
    original = model.read_bytes()
    try:
        model.write_bytes(original[: len(original) // 2])
        done = logitlab(["stages.evaluate"], reproduced, check=False)
        assert_one_line_error(done, "model.npz")
        assert not list((reproduced / "reports").glob("**/.*.tmp"))
    finally:
        model.write_bytes(original)
