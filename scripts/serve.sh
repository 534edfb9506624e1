#!/usr/bin/env bash
# Serve the registered `champion` model over HTTP (`make serve`): MLflow's scoring server (what
# `mlflow models serve -m "models:/<MODEL_NAME>@champion" --env-manager local` runs) on one uvicorn worker per
# core, behind a request-size limit (src/logitlab/serving.py), against the project's tracking store, in this
# venv (no new environment is built).
#
# Settings (environment):
#   MODEL_NAME            registered model to serve; default: the default config's
#                         mlflow.registered_model_name (logitlab-${data.name}, i.e. `logitlab-synthetic`).
#                         `make serve` passes `logitlab-circles`, what `make sweep` registers.
#   PORT                  port (5001); HOST (127.0.0.1)
#   WORKERS               uvicorn worker processes (default: one per core this process may use)
#   MAX_REQUEST_BYTES     largest request body accepted (default 1048576 = 1 MiB); a larger one is a 413
#   MLFLOW_TRACKING_URI   the store; default sqlite:///<project>/mlflow.db (as the pipeline resolves it)
#   LOGITLAB_ROOT         the project (default: this script's repository)
#   LOGITLAB_PYTHON       python with mlflow + logitlab (default: <project>/.venv/bin/python, else python3)
#
# Score raw rows (the data set's feature columns) with MLflow's JSON format, e.g. for `logitlab-circles`:
#   curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \
#        -d '{"dataframe_split": {"columns": ["x0", "x1"], "data": [[0.1, 0.2], [1.0, 0.0]]}}'
#   -> {"predictions": [{"probability": 0.9993..., "label": "1"}, {"probability": 0.0039..., "label": "0"}]}
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_DIR="$(cd "${LOGITLAB_ROOT:-$SCRIPT_DIR/..}" && pwd)"
PORT="${PORT:-5001}"
HOST="${HOST:-127.0.0.1}"

die() { echo "serve.sh: error: $*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
positive() { [[ "${!1}" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number, got '${!1}'"; }
serving_args=()  # unset: logitlab.serving's defaults
[[ -z "${WORKERS:-}" ]] || { positive WORKERS; serving_args+=(--workers "$WORKERS"); }
[[ -z "${MAX_REQUEST_BYTES:-}" ]] || { positive MAX_REQUEST_BYTES; serving_args+=(--max-request-bytes "$MAX_REQUEST_BYTES"); }

if [[ -n "${LOGITLAB_PYTHON:-}" ]]; then
    PYTHON="$LOGITLAB_PYTHON"
elif [[ -x "$PROJECT_DIR/.venv/bin/python" ]]; then
    PYTHON="$PROJECT_DIR/.venv/bin/python"
else
    PYTHON="$(command -v python3 || true)"
fi
[[ -n "$PYTHON" && -x "$PYTHON" ]] || die "no python found; run \`make setup\` first"

export DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 LOGITLAB_ROOT="$PROJECT_DIR"
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="${MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR:-false}"

# Resolve the store and the model name the way the pipeline does, and check that a champion exists:
# prints "<tracking uri>\t<model name>\t<version>", or one error line and exits 1.
resolved="$(cd "$PROJECT_DIR" && "$PYTHON" - <<'EOF'
import os
import sys
from pathlib import Path

try:
    from logitlab import config
    from logitlab.tracking import store

    root = Path(os.environ["LOGITLAB_ROOT"])
    mlflow_cfg = config.mlflow_config(config.compose()["mlflow"])
    uri = store.tracking_uri(mlflow_cfg, root)
    name = os.environ.get("MODEL_NAME") or mlflow_cfg.registered_model_name
except Exception as err:  # a broken config: say so in one line
    print(f"cannot resolve the tracking store: {' '.join(str(err).split())[:300]}")
    sys.exit(1)

if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
    print(f"no tracking store at {uri} (no champion '{name}' yet); run a sweep first: make sweep")
    sys.exit(1)

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

client = MlflowClient(uri, registry_uri=uri)
try:
    version = client.get_model_version_by_alias(name, "champion")
except MlflowException as err:
    code = getattr(err, "error_code", "")
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
        try:  # champions of other names (a sweep registers under its experiment, e.g. circles)
            others = sorted(m.name for m in client.search_registered_models() if "champion" in (m.aliases or {}))
        except MlflowException:
            others = []
        hint = f" (champions in this store: {', '.join(others)}; serve one with MODEL_NAME={others[0]})" if others else ""
        print(f"no model '{name}' with alias 'champion' in {uri}; run a sweep first: make sweep{hint}")
    else:
        print(f"tracking store {uri}: {' '.join(str(err).split())[:300]}")
    sys.exit(1)
print(f"{uri}\t{name}\t{version.version}")
EOF
)" || die "$(tail -n 1 <<<"${resolved:-could not check the champion (see above)}")"

IFS=$'\t' read -r TRACKING_URI NAME VERSION <<<"$resolved"
export MLFLOW_TRACKING_URI="$TRACKING_URI" MLFLOW_REGISTRY_URI="$TRACKING_URI"
echo "serve.sh: serving models:/$NAME@champion (version $VERSION) from $TRACKING_URI at http://$HOST:$PORT/invocations"
cd "$PROJECT_DIR"
# the version just resolved, so that what is served is what this line says
exec "$PYTHON" -m logitlab.serving --model-uri "models:/$NAME/$VERSION" --host "$HOST" --port "$PORT" \
    "${serving_args[@]}"
