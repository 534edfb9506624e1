"""The docs say what the project has: the versions the README names are the lock's and pyproject allows them."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from .conftest import REPO


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def test_readme_versions_are_the_locks_and_pyproject_allows_them() -> None:
    line = re.search(r"Versions in `uv.lock`: (.+?) \(a test", (REPO / "README.md").read_text(), re.S)
    assert line, "README.md lost its 'Versions in `uv.lock`:' line"
    named = dict(item.split() for item in " ".join(line.group(1).split()).split(", "))
    locked = locked_versions()
    assert named == {name: locked[name] for name in named}
    declared = {
        Requirement(spec).name.lower(): Requirement(spec)
        for spec in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    for name, version in named.items():
        assert Version(version) in declared[name].specifier, (name, version, str(declared[name]))


def test_the_lock_has_current_optuna_and_sqlalchemy_and_no_upstream_sweeper() -> None:
    locked = locked_versions()
    assert Version(locked["optuna"]) >= Version("4") and Version(locked["sqlalchemy"]) >= Version("2")
    assert "hydra-optuna-sweeper" not in locked
    assert not (REPO / "scripts" / "server_compat").exists()
