"""The MLflow UI checked in a real browser.

A real sweep (2 learning rates x 2 degrees on circles) runs in a project copy; the real `mlflow ui` serves
that copy's store on a free 127.0.0.1 port, as `make ui` does; headless Chromium (Debian's `chromium` and
`chromium-driver`, see scripts/install_browser.sh) opens it and checks what a person would look for:

- the experiment `circles` is listed;
- the experiment's runs table shows the sweep's parent run `sweep-<id>` and, expanded, its four children,
  each named by what the sweep varies (`lr=1 degree=2`) and with its data set in the Dataset column;
- a child's "Model metrics" tab draws the `train_loss` (and `val_loss`) line chart;
- the runs' chart view compares the children's loss curves;
- `make plots` (after `dvc repro`) draws every plot of dvc.yaml with no host reachable.

Screenshots of those pages are checked to be real 1400x900 pictures. They are written to a temporary folder,
or, with LOGITLAB_UPDATE_SCREENSHOTS=1, over the ones in docs/images/ that docs/ui.md embeds (a test run does
not change tracked files). Selenium never downloads anything: the browser and the driver are
the Debian packages at fixed paths, and Selenium Manager runs offline (SE_OFFLINE).

Missing browser: under CI (CI=true) the test installs it with scripts/install_browser.sh; elsewhere it fails
with the command to run (a `-m slow` run asked for this test, so it is not skipped silently).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import BASE_ENV, REPO, logitlab, make, make_project, run, store_uri

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_SCRIPT = REPO / "scripts" / "install_browser.sh"
DOCS_IMAGES = REPO / "docs" / "images"

EXPERIMENT = "circles"
SWEEP_ARGS = ["data=circles", "model.learning_rate=0.1,1", "features.degree=1,2", "model.max_iter=200"]
N_CHILDREN = 4
WIDTH, HEIGHT = 1400, 900  # the page's viewport, and so the screenshots' size

SERVER_START_TIMEOUT = 90  # s for /health: ~20 s here (its job runner's consumers start too)
SERVER_STOP_TIMEOUT = 15  # s after SIGTERM before SIGKILL
PAGE_LOAD_TIMEOUT = 60  # s for driver.get
WAIT = 30  # s for any element of the single-page app to appear
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing but this machine: pages work offline
    f"--window-size={WIDTH},{HEIGHT}",
]


# ------------------------------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class Sweep:
    project: Path
    experiment_id: str
    parent_id: str
    parent_name: str
    children: dict[str, dict[str, str]]  # run id -> params
    datasets: dict[str, str]  # run id -> the digest of the dataset it logged


@pytest.fixture(scope="module")
def sweep(module_project: Path) -> Sweep:
    logitlab(["sweep", "-m", *SWEEP_ARGS], module_project, timeout=600)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(module_project))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"the sweep created no experiment '{EXPERIMENT}'"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.info.run_name.startswith("sweep-")]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = {
        r.info.run_id: dict(r.data.params) for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert len(children) == N_CHILDREN, [r.info.run_name for r in runs]
    datasets = {r.info.run_id: r.inputs.dataset_inputs[0].dataset.digest for r in runs if r.info.run_id in children}
    return Sweep(module_project, experiment.experiment_id, parent.info.run_id, parent.info.run_name, children, datasets)


# ------------------------------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (uvicorn workers included), SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=SERVER_STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=SERVER_STOP_TIMEOUT)


@pytest.fixture(scope="module")
def ui_url(sweep: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow ui` on the sweep's store, as `make ui` starts it; stopped (whole process group) afterwards."""
    project = sweep.project
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("ui") / "mlflow-ui.log"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "ui",
        "--backend-store-uri",
        store_uri(project),
        "--default-artifact-root",
        str(project / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = start_until_healthy(cmd, project, url, log_path)
    try:
        yield url
    finally:
        stop_group(proc)


def start_until_healthy(cmd: list[str], cwd: Path, url: str, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (its output in `log_path`); return once `url` answers /health."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=BASE_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not healthy(url):
        if proc.poll() is not None:
            pytest.fail(f"{cmd[0]} exited {proc.returncode} before answering /health:\n{log_path.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            stop_group(proc)
            pytest.fail(f"{cmd[0]} gave no /health in {SERVER_START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.5)
    return proc


def test_make_ui_starts_without_a_python_warning(tmp_path: Path) -> None:
    """`make ui` as a user runs it prints no Python warning up to its first answer: mlflow's server app imports
    starlette.middleware.wsgi, which starlette 1.x deprecates at import; the Makefile silences that one warning."""
    project = make_project(tmp_path / "project")
    port, venv = free_port(), REPO / ".venv"
    command = ["make", "--no-print-directory", "-o", f"{venv}/.synced", f"VENV={venv}", f"UV={REPO / '.tools/bin/uv'}"]
    log_path = tmp_path / "make-ui.log"
    stop_group(start_until_healthy([*command, "ui", f"PORT={port}"], project, f"http://127.0.0.1:{port}", log_path))
    printed = log_path.read_text()
    assert "Uvicorn running on" in printed
    assert not re.search(r"\.py:\d+: \w*Warning: ", printed), printed  # how Python prints a warning


# ----------------------------------------------------------------------------------------- the browser
def ensure_browser() -> None:
    if CHROMIUM.is_file() and CHROMEDRIVER.is_file():
        return
    if os.environ.get("CI", "").lower() == "true":
        done = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"{INSTALL_SCRIPT} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return
    pytest.fail(
        f"headless Chromium is missing ({CHROMIUM}, {CHROMEDRIVER}): run `bash scripts/install_browser.sh` "
        "(apt-get install chromium chromium-driver); under CI=true this test installs it itself"
    )


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    ensure_browser()
    profile = tempfile.mkdtemp(prefix="logitlab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or a browser
        browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        browser.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        browser.set_script_timeout(WAIT)
        # --window-size is the outer window: grow it so that the viewport (and so each screenshot) is WIDTHxHEIGHT
        inner_w, inner_h = browser.execute_script("return [window.innerWidth, window.innerHeight]")
        browser.set_window_size(2 * WIDTH - inner_w, 2 * HEIGHT - inner_h)
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_dump(driver: Any, name: str) -> str:
    """Save the page's HTML and a screenshot beside the test's temp files, for a failure message."""
    folder = Path(tempfile.mkdtemp(prefix=f"logitlab-ui-{name}-"))
    with contextlib.suppress(Exception):
        (folder / "page.html").write_text(driver.page_source, encoding="utf-8")
        driver.save_screenshot(str(folder / "page.png"))
    return str(folder)


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
    """An explicit, bounded wait whose failure says what was awaited and where the page was saved."""

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        dump = page_dump(driver, "failure")
        pytest.fail(f"no {what} within {timeout} s at {driver.current_url} (page saved in {dump})")


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete", "loaded page")


def close_assistant(driver: Any) -> None:
    """MLflow 3 opens its 'Assistant' side panel on a first visit; it only hides the page."""
    for button in driver.find_elements(
        By.CSS_SELECTOR, 'button[data-component-id="mlflow.assistant.chat_panel.close"]'
    ):
        with contextlib.suppress(WebDriverException):
            button.click()


def park_mouse(driver: Any) -> None:
    """Pointer to the viewport's top-left corner (the logo) and focus off the page, so that no plotly toolbar,
    tooltip or focus ring is in the screenshot."""

    with contextlib.suppress(Exception):
        actions = ActionBuilder(driver)
        actions.pointer_action.move_to_location(2, 2)
        actions.perform()
    driver.execute_script("document.activeElement && document.activeElement.blur()")


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: docs/images/ only when asked to update the docs' pictures."""
    if os.environ.get("LOGITLAB_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    return tmp_path_factory.mktemp("screenshots")


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """Write `folder`/<name> and check that it is a real picture of the page."""
    time.sleep(1.0)  # charts animate in; the assertions before already waited for their content
    path = folder / name
    assert driver.save_screenshot(str(path)), f"screenshot {path} failed"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 20_000, f"{path} is only {len(data)} bytes"
    with Image.open(path) as image:
        assert image.size == (WIDTH, HEIGHT), f"{path} is {image.size}, not {(WIDTH, HEIGHT)}"
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
        assert len(colors) > 100, f"{path} has only {len(colors)} colours: a blank page?"
    return path


def runs_page(sweep: Sweep, url: str) -> str:
    # workflowType=machine_learning: MLflow 3 otherwise opens an experiment on its GenAI overview
    return f"{url}/#/experiments/{sweep.experiment_id}/runs?workflowType=machine_learning"


def run_link(run_id: str) -> tuple[str, str]:
    return (By.CSS_SELECTOR, f'a[href$="/runs/{run_id}"]')


def show_children(driver: Any, sweep: Sweep, url: str) -> None:
    """Open the experiment's runs table and expand the sweep's parent run to list its children."""
    open_page(driver, runs_page(sweep, url))
    parent = wait_for(driver, ec.visibility_of_element_located(run_link(sweep.parent_id)), "parent run row")
    assert parent.text.strip() == sweep.parent_name
    close_assistant(driver)
    # Children are collapsed under their parent: the +/- button sits in the parent's Run Name cell.
    cell = parent.find_element(By.XPATH, './ancestor::div[contains(@class, "ag-cell")][1]')
    if not all(driver.find_elements(*run_link(child)) for child in sweep.children):
        cell.find_element(By.TAG_NAME, "button").click()
    for child in sweep.children:
        wait_for(driver, ec.visibility_of_element_located(run_link(child)), f"child run {child} under the parent")


# ------------------------------------------------------------------------------------------- the tests
def test_experiment_is_listed(driver: Any, ui_url: str, sweep: Sweep) -> None:
    open_page(driver, f"{ui_url}/#/experiments")
    link = wait_for(
        driver,
        ec.visibility_of_element_located((By.XPATH, f'//a[normalize-space(.)="{EXPERIMENT}"]')),
        f"experiment '{EXPERIMENT}' in the list",
    )
    assert link.get_attribute("href").endswith(f"#/experiments/{sweep.experiment_id}")


def test_sweep_parent_and_children(driver: Any, ui_url: str, sweep: Sweep, screens: Path) -> None:
    show_children(driver, sweep, ui_url)
    names = {child: driver.find_element(*run_link(child)).get_attribute("textContent") for child in sweep.children}
    for child, params in sweep.children.items():
        # a child is named by what the sweep varies, short enough for the column: lr=1 degree=2
        assert names[child] == f"lr={params['model.learning_rate']} degree={params['features.degree']}"
    body = driver.find_element(By.TAG_NAME, "body").text
    assert f"{1 + N_CHILDREN} matching runs" in body
    # the Dataset column: each child's data set, by name and content hash (mlflow.log_input)
    header = driver.find_element(By.XPATH, '//*[contains(@class, "ag-header-cell")][normalize-space(.)="Dataset"]')
    assert header.is_displayed()
    for child, digest in sweep.datasets.items():
        row = driver.find_element(*run_link(child)).find_element(By.XPATH, './ancestor::div[@role="row"][1]')
        row_id = row.get_attribute("row-index")
        cells = driver.find_elements(By.XPATH, f'//div[@role="row"][@row-index="{row_id}"]')
        text = " ".join(cell.text for cell in cells)
        assert EXPERIMENT in text and digest[:6] in text, (child, text)
    fit_run_names(driver)
    park_mouse(driver)
    screenshot(driver, screens, "ui-experiment-runs.png")


def test_child_run_shows_train_loss_chart(driver: Any, ui_url: str, sweep: Sweep, screens: Path) -> None:
    # the child that learns the circles (degree 2, learning rate 1): a clearly falling loss curve
    child = next(
        run
        for run, params in sweep.children.items()
        if params["features.degree"] == "2" and params["model.learning_rate"] == "1"
    )
    open_page(
        driver, f"{ui_url}/#/experiments/{sweep.experiment_id}/runs/{child}/model-metrics?workflowType=machine_learning"
    )
    search = wait_for(
        driver,
        ec.element_to_be_clickable((By.CSS_SELECTOR, 'input[placeholder="Search metric charts"]')),
        "the metric charts' search box",
    )
    close_assistant(driver)
    for metric in ("val_loss", "train_loss"):  # the screenshot shows the last one
        set_text(search, metric)
        card = wait_for(driver, ec.visibility_of_element_located(chart_card(metric)), f"'{metric}' chart card")
        # a plotly line: a drawn trace path with points, not an empty chart
        wait_for(driver, lambda _, c=card: traces_drawn(c) >= 1, f"a line in the '{metric}' chart")
    park_mouse(driver)
    screenshot(driver, screens, "ui-run-train-loss.png")


def test_compare_children_in_chart_view(driver: Any, ui_url: str, sweep: Sweep, screens: Path) -> None:
    show_children(driver, sweep, ui_url)
    chart_mode = driver.find_element(By.CSS_SELECTOR, 'input[name="runs-view-mode"][value="CHART"]')
    driver.execute_script("arguments[0].closest('label').click()", chart_mode)
    search = wait_for(
        driver,
        ec.element_to_be_clickable((By.CSS_SELECTOR, 'input[placeholder="Search metric charts"]')),
        "the chart view's search box",
    )
    search.send_keys("train_loss")
    card = wait_for(driver, ec.visibility_of_element_located(chart_card("train_loss")), "'train_loss' chart card")
    # one line per child (the parent holds only its best child's final values)
    wait_for(driver, lambda _: traces_drawn(card) >= N_CHILDREN, f"{N_CHILDREN} lines in the train_loss chart")
    legend = card.get_attribute("textContent")
    for params in sweep.children.values():
        assert f"lr={params['model.learning_rate']} degree={params['features.degree']}" in legend
    # full screen: the chart large, with every run's legend entry
    card.find_element(By.CSS_SELECTOR, 'button[data-component-id="fullscreen_button_chartcard"]').click()
    dialog = wait_for(
        driver, ec.visibility_of_element_located((By.CSS_SELECTOR, '[role="dialog"]')), "full-screen chart"
    )
    wait_for(driver, lambda _: traces_drawn(dialog) >= N_CHILDREN, f"{N_CHILDREN} lines in the full-screen chart")
    park_mouse(driver)
    screenshot(driver, screens, "ui-compare.png")


def fit_run_names(driver: Any) -> None:
    """Widen the Run Name column to its longest name, as a person does by double-clicking its edge."""
    header = driver.find_element(By.XPATH, '//*[contains(@class, "ag-header-cell")][normalize-space(.)="Run Name"]')
    handle = header.find_element(By.CSS_SELECTOR, ".ag-header-cell-resize")
    ActionChains(driver).double_click(handle).perform()


# --------------------------------------------------------------------------------------- chart helpers
def chart_card(metric: str) -> tuple[str, str]:
    return (By.XPATH, f'//*[@data-testid="experiment-view-compare-runs-card"][.//h4[@title="{metric}"]]')


def traces_drawn(element: Any) -> int:
    """How many plotly line traces with real points are drawn inside `element`."""
    paths = element.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace path.js-line")
    return sum(len(p.get_attribute("d") or "") > 50 for p in paths)


def set_text(field: Any, text: str) -> None:
    """Replace an input's text the way a user does (React ignores a plain .clear())."""
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)


# ------------------------------------------------------------------------------------- make plots, offline
def test_make_plots_renders_every_plot_offline(driver: Any, sweep: Sweep, screens: Path) -> None:
    """`make plots` after `dvc repro`: every vega chart drawn and both figures shown, with no host reachable."""
    project = sweep.project
    run(["dvc", "repro"], project, timeout=600)
    make(project, "plots", timeout=300)
    page = project / "dvc_plots" / "index.html"
    assert "cdn." not in page.read_text(), "the page must not load anything from a CDN"
    open_page(driver, page.as_uri())
    titles = ["Loss per epoch", "ROC", "Precision-recall", "Confusion matrix", "Calibration"]
    drawn = "return [...document.querySelectorAll('.vega-embed')].filter(e => e.querySelector('svg, canvas')).length"
    wait_for(driver, lambda d: d.execute_script(drawn) == len(titles), f"{len(titles)} drawn vega charts")
    source = page.read_text()
    for title in titles:
        assert f'"title": {{"text": "{title}"' in source, title
    assert '"title": "loss"' in source, "the loss chart's y axis is titled loss, not y"
    images = "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
    wait_for(driver, lambda d: d.execute_script(images) == 2, "the decision boundary and coefficients figures")
    park_mouse(driver)
    screenshot(driver, screens, "dvc-plots.png")
