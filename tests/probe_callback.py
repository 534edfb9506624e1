"""A test-only Hydra callback that records, as JSON in `out`, the libraries a real sweep's launching process has
loaded as each of its jobs starts, in order, how many objects it had frozen out of the cyclic collector's
sight then, and numpy's huge-page switch (`+hydra.callbacks.probe._target_=tests.probe_callback.ProbeCallback
+hydra.callbacks.probe.out=<file>`)."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

HEAVY = ("matplotlib", "sklearn", "scipy", "mlflow", "pandas", "pyarrow", "sqlalchemy")


class ProbeCallback(Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.loaded: list[list[str]] = []
        self.frozen: list[int] = []

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self.loaded.append(sorted(name for name in HEAVY if name in sys.modules))
        self.frozen.append(gc.get_freeze_count())
        numpy = sys.modules.get("numpy")  # its huge-page switch, once imported (`sweep._small_pages_for_numpy`)
        huge_pages = None if numpy is None else bool(numpy._core.multiarray._get_madvise_hugepage())
        self.out.write_text(json.dumps({"loaded": self.loaded, "frozen": self.frozen, "huge_pages": huge_pages}))
