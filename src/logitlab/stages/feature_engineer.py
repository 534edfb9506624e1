"""Stage 3: polynomial and interaction terms with readable names, written as the model's input tables.

The report carries `data_hash`, a content hash of the tables written (runs are tagged with it to tell data
versions apart): computed here, once per data version, while the rows pass through anyway. Cross-validation
folds (preprocess's `folds/`) are expanded the same way, each by an expansion fitted on its training part.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io
from logitlab.sources import TARGET
from logitlab.stage import Files, Output, Stage
from logitlab.stages import preprocess
from logitlab.transforms import PolynomialExpander

SPLITS = preprocess.SPLITS


def run(
    splits: dict[str, pd.DataFrame], cfg: config.FeaturesConfig, unchanged: bool = False
) -> tuple[dict[str, pd.DataFrame], PolynomialExpander, dict[str, Any]]:
    """The splits expanded, the fitted expansion and the report. `unchanged`: the expansion is known to give
    every split back as it is (`_passes_through`), so they are hashed as they are, not copied by it first
    (~0.1-0.2 s of a sweep's first job on a 30k-row CSV's 133 features)."""
    expander = _fitted(splits["train"], cfg)
    out = dict(splits) if unchanged else {name: _expanded(expander, part) for name, part in splits.items()}
    return out, expander, {**expander.report(), "data_hash": data_hash({k: [v] for k, v in out.items()})}


def stream(
    inputs: Mapping[str, Path], outputs: Mapping[str, Path], cfg: config.FeaturesConfig
) -> tuple[PolynomialExpander, dict[str, Any]]:
    """The chunked `run`: fitted on the first training chunk (the expansion depends only on the columns,
    and a chunk is what must fit in memory), then each split expanded row group by row group."""
    expander = _fitted(next(io.read_row_groups(inputs["train"])), cfg)
    digests = {}
    with contextlib.ExitStack() as stack:
        for name in SPLITS:
            writer = stack.enter_context(io.chunk_writer(outputs[name]))
            expanded = (_expanded(expander, part) for part in io.read_row_groups(inputs[name]))
            digests[name] = _digest(_written(writer, expanded))
    return expander, {**expander.report(), "data_hash": _combined(digests)}


def _fitted(train: pd.DataFrame, cfg: config.FeaturesConfig) -> PolynomialExpander:
    expander = PolynomialExpander(cfg.degree, cfg.interaction_only, cfg.include, cfg.max_features)
    return expander.fit(train.drop(columns=[TARGET]))


def _expanded(expander: PolynomialExpander, part: pd.DataFrame) -> pd.DataFrame:
    frame = expander.transform(part.drop(columns=[TARGET]))
    frame[TARGET] = part[TARGET].to_numpy()
    return frame


def _written(writer: io.ChunkWriter, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in frames:
        writer.write(frame)
        yield frame


def data_hash(splits: Mapping[str, Iterable[pd.DataFrame]]) -> str:
    """A short content hash of the model's input tables: each split a sequence of row chunks; row hashes
    concatenate, so the digest does not depend on how the rows were chunked."""
    return _combined({name: _digest(chunks) for name, chunks in splits.items()})


def _digest(chunks: Iterable[pd.DataFrame]) -> bytes:
    digest = hashlib.sha256()
    for frame in chunks:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.digest()


def _combined(digests: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(digests):
        digest.update(name.encode() + digests[name])
    return digest.hexdigest()[:16]


def settings(params: Mapping[str, Any]) -> config.FeaturesConfig:
    return config.features_config(params["features"])


def execute(cfg: config.FeaturesConfig, files: Files) -> None:
    if io.row_groups(files.inputs["train"]) > 1:
        expander, report = stream(files.inputs, files.outputs, cfg)
    else:
        unchanged = _passes_through(cfg, [files.inputs[name] for name in SPLITS])
        out, expander, report = run({name: io.read_parquet(files.inputs[name]) for name in SPLITS}, cfg, unchanged)
        written = {}
        for name, frame in out.items():
            if unchanged or _passes_through(cfg, [files.inputs[name]]):
                io.link_file(files.inputs[name], files.outputs[name])
            else:
                written[files.outputs[name]] = frame
        io.write_parquets(written)
    if _passes_through(cfg, preprocess.fold_files(files.inputs["folds"])):
        io.link_folder(files.inputs["folds"], files.outputs["folds"])
    else:
        expanded = [expand_fold(fold, cfg) for fold in preprocess.read_folds(files.inputs["folds"])]
        preprocess.write_folds(files.outputs["folds"], expanded)
    io.write_json(files.outputs["state"], expander.to_dict())
    io.write_json(files.outputs["report"], report)


def _passes_through(cfg: config.FeaturesConfig, tables: Iterable[Path]) -> bool:
    """Whether the expansion gives every table back unchanged, known without reading their rows: it adds no
    term (degree 1, the default, or no column included) and each table's features are float64 with the label
    last, as `_expanded` orders them. Its files are then links to preprocess's, the same bytes (a parquet
    write of each table saved; for the folds also their reads and expansions: ~0.3 s of a CV sweep's first
    job on a 30k-row CSV's features)."""
    if cfg.degree > 1 and cfg.include != []:
        return False
    for table in tables:
        columns = io.column_types(table)
        names = list(columns)
        if not names or names[-1] != TARGET or any(columns[name] != "double" for name in names[:-1]):
            return False
    return True


def expand_fold(fold: preprocess.Fold, cfg: config.FeaturesConfig) -> preprocess.Fold:
    """A cross-validation fold expanded by an expansion fitted on its training part (as `run` does a split)."""
    expander = _fitted(fold["train"], cfg)
    return {part: _expanded(expander, frame) for part, frame in fold.items()}


STAGE = Stage(
    name="feature-engineer",
    params=("features",),
    inputs={**{name: preprocess.STAGE.output(name) for name in SPLITS}, "folds": preprocess.STAGE.output("folds")},
    outputs={
        **{name: Output(Path(f"data/processed/{name}.parquet")) for name in SPLITS},
        "state": Output(Path("data/processed/features.json")),
        "report": Output(Path("reports/features.json"), cache=False),
        "folds": Output(Path("data/processed/folds")),  # preprocess's folds, expanded
    },
    sources=("src/logitlab/stages/feature_engineer.py", "src/logitlab/transforms.py"),
    settings=settings,
    run=execute,
    shared=True,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
