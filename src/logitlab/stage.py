"""How a pipeline stage is declared: once, and read by every executor.

A `Stage` names its params sections, its inputs and outputs (paths relative to a workspace), the source
files it depends on and its function. `dvc.yaml` is generated from the declarations (`logitlab.pipeline`),
`python -m logitlab.stages.<stage>` runs one with the project as its workspace, and a sweep job runs them all
with upstream outputs in a content-addressed cache: one fact, one place, whoever executes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from logitlab.tracking.results import RunRecord

Settings = TypeVar("Settings")


@dataclass(frozen=True)
class Output:
    path: Path
    cache: bool = True  # False: a small report git keeps (DVC's `cache: false`)
    metric: bool = False  # a DVC metrics file
    by_finish: bool = False  # written by the stage's `finish`, not its `run`

    @property
    def is_report(self) -> bool:
        """Under `reports/`: what a person reads; every run logs these as artifacts."""
        return self.path.parts[0] == "reports"


@dataclass(frozen=True)
class Files:
    """Where a stage reads and writes, resolved by its executor: the project for DVC, cache entries and the
    job directory for a sweep."""

    inputs: Mapping[str, Path]
    outputs: Mapping[str, Path]


@dataclass(frozen=True)
class Stage(Generic[Settings]):
    """One pipeline stage.

    `settings` validates the params sections the stage reads (and only those); `run` reads `files.inputs`,
    writes every `files.outputs` atomically and returns what the caller may want to know (evaluate: the
    metrics). `finish` is work nothing downstream reads (figures): DVC runs it at once, a sweep may run it
    in the background. `record` turns the files of a finished run into what MLflow logs. `named_files` are
    files the settings name (a user's CSV): a sweep's cache key includes their content.
    """

    name: str
    params: tuple[str, ...]
    inputs: Mapping[str, Path]
    outputs: Mapping[str, Output]
    sources: tuple[str, ...]
    settings: Callable[[Mapping[str, Any]], Settings]
    run: Callable[[Settings, Files], Any]
    shared: bool = False  # a sweep computes it once per distinct cache key and shares it between jobs
    finish: Callable[[Files], None] | None = None
    record: Callable[[Files], RunRecord] | None = None
    named_files: Callable[[Settings], Sequence[Path]] | None = None

    @property
    def module(self) -> str:
        return f"logitlab.stages.{self.name.replace('-', '_')}"

    def output(self, name: str) -> Path:
        return self.outputs[name].path

    def finished(self, files: Files) -> list[Path]:
        """Where `finish` writes, in `files`."""
        return [files.outputs[name] for name, out in self.outputs.items() if out.by_finish]

    def resolve(self, inputs: Mapping[Path, Path], outputs: Path) -> Files:
        """Files with each input looked up in `inputs` (declared path -> where it is) and every output placed
        under `outputs` at its declared relative path."""
        return Files(
            {name: inputs[path] for name, path in self.inputs.items()},
            {name: outputs / out.path for name, out in self.outputs.items()},
        )
