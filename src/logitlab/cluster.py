"""Where SLURM's commands (sbatch, sacct, scancel) find their cluster, for `hydra/launcher=slurm`.

Without `SLURM_CONF` or a system config, sbatch ends with "Could not establish a configuration source". The
project's own cluster (`make slurm`: scripts/slurm.sh) keeps its config in `.slurm/` (or `LOGITLAB_SLURM_DIR`),
which names everything else the clients need (the controller's address, the munge socket, accounting): so when
no configuration is set, a sweep points SLURM_CONF there, for itself and the commands it runs, in any shell.
"""

from __future__ import annotations

import os
from pathlib import Path

from logitlab.errors import ConfigError

# Where SLURM's clients look when SLURM_CONF is unset: Debian's compiled-in default, and the copy a configless
# cluster's node daemon (slurmd, sackd) keeps.
SYSTEM_CONFIGS = (Path("/etc/slurm/slurm.conf"), Path("/run/slurm/conf/slurm.conf"))


def is_slurm_launcher(launcher_target: str) -> bool:
    """`hydra/launcher=slurm` (ours) or `submitit_slurm` (hydra-submitit-launcher's): both run sbatch."""
    return launcher_target.endswith(".SlurmLauncher")


def project_slurm_conf(root: Path) -> Path:
    """The config `scripts/slurm.sh start` writes: `${LOGITLAB_SLURM_DIR:-<project>/.slurm}/slurm.conf`."""
    return root / os.environ.get("LOGITLAB_SLURM_DIR", ".slurm") / "slurm.conf"


def use_slurm_config(root: Path) -> None:
    """Leave a configured SLURM alone; else set SLURM_CONF to the project's cluster; else a ConfigError saying
    what to run, before any job is submitted."""
    if conf := os.environ.get("SLURM_CONF"):
        if not Path(conf).is_file():
            raise ConfigError(f"SLURM_CONF: {conf} does not exist; set it to your cluster's slurm.conf")
        return
    if any(path.is_file() for path in SYSTEM_CONFIGS):
        return
    project_conf = project_slurm_conf(root)
    if not project_conf.is_file():
        raise ConfigError(
            f"hydra/launcher=slurm: no SLURM cluster configured (SLURM_CONF is unset, no {SYSTEM_CONFIGS[0]}, "
            f"no {project_conf}); start the project's cluster with `make slurm`, or set SLURM_CONF"
        )
    os.environ["SLURM_CONF"] = str(project_conf)
