# logitlab: `make repro` and `make test` are all a new user needs (`make help` lists the rest).
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_COMPILE_BYTECODE := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PATH := $(CURDIR)/.venv/bin:$(PATH)

UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
PYTEST_ARGS ?=
# pytest-xdist workers (a test file per worker at a time: pyproject's --dist loadfile): one per core for the fast
# suite, which is CPU-bound; the slow one mostly waits on servers, SLURM and DVC, so it runs more. 0: one process.
TEST_WORKERS ?= auto
SLOW_TEST_WORKERS ?= 3

.PHONY: help setup repro lock plots exps test test-slow check params pipeline sweep ui server server-stop server-status server-install slurm slurm-stop slurm-status browser serve bench bench-selection bench-serve lint format typecheck clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python python3.11
	touch $@

setup: $(VENV)/.synced ## Create .venv from uv.lock (once; again when the lock changes)

repro: setup params ## Set up, recompose params.yaml from conf/, then run the pipeline: dvc repro
	$(VENV)/bin/dvc repro

lock: setup ## Refresh dvc.lock and the reports it records from a run in a fresh copy (after editing src/ or conf/); commit them
	VENV="$(VENV)" UV="$(UV)" bash scripts/lock.sh

plots: setup ## dvc_plots/index.html: every plot of dvc.yaml, rendering with no network (after make repro)
	$(PY) -m logitlab.plots_page

# The params that vary between experiments and the headline metrics; every other column dropped.
EXPS_COLUMNS := Experiment$$|Created$$|(data|preprocess|features|model|mlflow)\.|seed$$|val_accuracy$$|test_accuracy$$|test_roc_auc$$|test_log_loss$$
exps: setup ## dvc exp show, readable: the params that vary and the headline metrics
	$(VENV)/bin/dvc exp show --only-changed --md --no-pager --drop '^(?!$(EXPS_COLUMNS))'

test: setup ## Set up, then run the fast test suite (make test-slow runs the rest)
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-slow: setup ## Long tests: the real dvc repro/exp run, fault injection, tracking server and its outages, SLURM, browser, the tutorial's numbers (CI runs them too)
	$(PY) -m pytest -m "slow" -n $(SLOW_TEST_WORKERS) $(PYTEST_ARGS)

check: lint typecheck ## ruff lint + format check + mypy

params: setup ## Recompose params.yaml from conf/ (as dvc exp run does)
	$(PY) -c "from logitlab.config import write_params; write_params('params.yaml')"

pipeline: setup ## Regenerate dvc.yaml from the stage declarations (src/logitlab/stages/*.py)
	$(PY) -c "from logitlab.pipeline import write_dvc_yaml; write_dvc_yaml('dvc.yaml')"

sweep: setup ## Example sweep: 3 learning rates x 3 degrees on circles, tracked in MLflow
	$(PY) -m logitlab.sweep -m data=circles model.learning_rate=0.01,0.1,1 features.degree=1,2,3

# mlflow 3.17's server app imports starlette.middleware.wsgi, which starlette 1.x deprecates with a warning at
# every start that no user can act on: that one warning (its text, category and importing module) is silenced.
UI_WARNING_FILTER := ignore:starlette.middleware.wsgi is deprecated:UserWarning:mlflow.server.fastapi_app
ui: setup ## MLflow UI on the project's store at http://127.0.0.1:5000 (PORT=... to change)
	PYTHONWARNINGS="$${PYTHONWARNINGS:+$$PYTHONWARNINGS,}$(UI_WARNING_FILTER)" $(VENV)/bin/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--default-artifact-root "$(CURDIR)/mlartifacts" --host 127.0.0.1 --port $(PORT) --workers 1

server: setup ## Multi-user MLflow server on PostgreSQL with basic auth (see docs/server.md)
	bash scripts/server.sh start

server-stop: ## Stop the tracking server and its PostgreSQL
	bash scripts/server.sh stop

server-status: ## Is the tracking server running?
	bash scripts/server.sh status

server-install: ## Install PostgreSQL if missing (apt-get; needed by make server and the server tests)
	bash scripts/server.sh install

slurm: ## Single-node SLURM cluster for hydra/launcher=slurm (root; installs slurm-wlm if missing; see docs/cluster.md)
	bash scripts/slurm.sh start

slurm-stop: ## Stop the SLURM cluster's daemons
	bash scripts/slurm.sh stop

slurm-status: ## Does the SLURM cluster take jobs?
	bash scripts/slurm.sh status

browser: ## Install headless Chromium + chromedriver (Debian packages) for the browser test
	bash scripts/install_browser.sh

serve: setup ## Serve a registered champion over HTTP at 127.0.0.1:5001, a worker per core (MODEL_NAME, default logitlab-circles: make sweep's; WORKERS, MAX_REQUEST_BYTES)
	MODEL_NAME="$${MODEL_NAME:-logitlab-circles}" bash scripts/serve.sh

# One process (--dist no over pyproject's --dist loadfile): pytest-benchmark turns its timing off under xdist.
bench: setup ## Benchmarks -> reports/bench/: solvers vs scikit-learn, epochs vs matvec floor, sweeps, model selection, 5 GB out of core (BENCH=-k expr)
	mkdir -p reports/bench
	$(PY) -m pytest tests/benchmarks -o python_files='bench_*.py' -o python_functions='bench_*' -o timeout=7200 --dist no \
		$(if $(BENCH),,--benchmark-json=reports/bench/pytest-benchmark.json) --benchmark-columns=min,median,rounds -q $(BENCH)

bench-selection: setup ## Model selection: sweeps and CV against a hand-written MLflow loop and LogisticRegressionCV, ratios and goals -> reports/bench/ (~5 min at the goals' speed)
	$(MAKE) --no-print-directory bench BENCH='-k model_selection'

bench-serve: setup ## Load benchmark of make serve (1 vs 8 clients, 1 worker vs one per core; 413s) -> reports/bench/, ~4 min
	$(MAKE) --no-print-directory bench BENCH='-k serving'

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: setup ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

typecheck: setup ## mypy on src/
	$(VENV)/bin/mypy src

clean: ## Remove pipeline outputs, sweep dirs, caches, dvc_plots/ and optuna.db (keeps mlflow.db and mlartifacts/)
	rm -rf data/raw/dataset.parquet data/raw/schema.json data/interim data/processed models \
		reports/figures reports/cv multirun outputs .cache dvc_plots optuna.db
