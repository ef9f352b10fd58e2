"""Start and stop a throwaway single-node SLURM cluster (munged, slurmctld, slurmd) for the tests.

Needs root. Installs Debian's slurm-wlm and munge when they are missing and `install` is allowed.
Any /etc/slurm/slurm.conf already there is set aside and put back by `stop`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONF = Path("/etc/slurm/slurm.conf")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun")


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def install() -> None:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
    subprocess.run(["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], check=True, env=environment)


def controller_answers() -> bool:
    if shutil.which("squeue") is None:
        return False
    return subprocess.run(["squeue", "-h"], capture_output=True, timeout=20).returncode == 0


@dataclass
class Cluster:
    state: Path
    started: list[subprocess.Popen] = field(default_factory=list)
    saved_conf: Path | None = None

    def log_tail(self) -> str:
        text = ""
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.state / name
            if path.exists():
                text += f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-20:]) + "\n"
        return text


def memory_mb() -> int:
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return int(total_kb / 1024 * 0.8)


def start(state: Path) -> Cluster:
    """Write the config, start munged, slurmctld and slurmd, and wait until the node is idle."""
    state.mkdir(parents=True, exist_ok=True)
    for sub in ("ctld", "d"):
        (state / sub).mkdir(exist_ok=True)
    cluster = Cluster(state)
    host = socket.gethostname()
    text = (
        (HERE / "slurm.conf.template")
        .read_text()
        .format(host=host, state=state, cpus=os.cpu_count(), memory_mb=memory_mb())
    )
    CONF.parent.mkdir(parents=True, exist_ok=True)
    if CONF.exists():
        cluster.saved_conf = state / "slurm.conf.saved"
        shutil.copy2(CONF, cluster.saved_conf)
    CONF.write_text(text)

    munge_socket = Path("/run/munge")
    munge_socket.mkdir(parents=True, exist_ok=True)
    shutil.chown(munge_socket, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=False)
    for daemon in ("slurmctld", "slurmd"):
        process = subprocess.Popen([f"/usr/sbin/{daemon}", "-D"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cluster.started.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip() in ("idle", "mix"):
            return cluster
        time.sleep(0.5)
    stop(cluster)
    raise RuntimeError(f"the test SLURM cluster did not come up\n{cluster.log_tail()}")


def stop(cluster: Cluster) -> None:
    """Stop the daemons this module started and put back any slurm.conf it set aside."""
    subprocess.run(["scancel", "--user", "root"], capture_output=True)
    for process in cluster.started:
        process.terminate()
    for process in cluster.started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    subprocess.run(["pkill", "-x", "munged"], check=False)
    if cluster.saved_conf is not None:
        shutil.copy2(cluster.saved_conf, CONF)
    else:
        CONF.unlink(missing_ok=True)
