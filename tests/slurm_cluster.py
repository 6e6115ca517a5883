"""A throwaway single-node SLURM cluster on localhost, for tests (Debian slurm-wlm + munge).

Everything lives in one folder: munge key and socket, ``slurm.conf``, ``gres.conf``, spool, state,
logs, and a ``bin/`` of client wrappers (``sbatch``, ``srun``, ``squeue``, ...) that point at this
cluster's ``slurm.conf``. Nothing under /etc, /run or /var is written, the daemons listen on free
ports, and they run in the foreground as children of this process — ``stop()`` ends them by PID —
so several test sessions (or a real SLURM install on the same machine) do not interfere.

Why client wrappers and not only ``SLURM_CONF``: inside a job, Snakemake's slurm-jobstep plugin
removes every inherited ``SLURM_*`` variable before it calls ``srun``, so ``srun`` would look for
/etc/slurm/slurm.conf. On a real cluster that file exists on every node; here the wrapper on
``PATH`` plays its part.

The node has ``gpus`` fake GPUs (GRES backed by /dev/null, /dev/zero, ...): SLURM accounts for them,
binds them to jobs and sets ``CUDA_VISIBLE_DEVICES`` — enough to test GPU requests without a GPU.

Needs root (the daemons switch users for the jobs) and the Debian packages
``slurm-wlm munge`` (``apt-get install -y --no-install-recommends slurm-wlm munge``).

    with LocalSlurm(tmp_path, gpus=2, partitions={"cpu": True, "gpu": False}) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel", "sacct", "salloc")
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
#: character devices that exist on every Linux system: the fake GPUs' device files
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here (not root, packages missing, or the daemons did not come up)."""


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be started here, or None when it can be tried."""
    if not sys.platform.startswith("linux"):
        return "local SLURM needs Linux"
    if os.geteuid() != 0:
        return "local SLURM needs root (slurmd starts jobs as their user)"
    missing = [n for n in DAEMONS + CLIENTS if _find(n) is None]
    if missing:
        return ("SLURM/munge not installed (missing " + ", ".join(missing) + "; "
                "apt-get install -y --no-install-recommends slurm-wlm munge)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mem_total_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 8000


class LocalSlurm:
    """One node ``localhost`` with ``cpus`` CPUs, ``mem_mb`` memory and ``gpus`` fake GPUs.

    partitions: name -> is-default; every partition holds the one node. ``env`` is the environment
    for client commands and for Snakemake (wrappers first on PATH, SLURM_CONF set).
    ``min_job_age`` (s) keeps finished jobs visible to ``squeue``/``scontrol`` — the slurm executor's
    ``squeue`` status command needs it at least 3x its status interval.
    """

    def __init__(self, root: str | Path, *, cpus: int | None = None, mem_mb: int | None = None,
                 gpus: int = 2, partitions: dict[str, bool] | None = None,
                 min_job_age: int = 300, cluster_name: str | None = None):
        self.root = Path(root).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb or max(4000, int(mem_total_mb() * 0.9))
        if gpus > len(FAKE_GPU_FILES):
            raise ValueError(f"at most {len(FAKE_GPU_FILES)} fake GPUs")
        self.gpus = gpus
        self.partitions = partitions or {"debug": True}
        if sum(bool(v) for v in self.partitions.values()) != 1:
            raise ValueError("exactly one partition must be the default")
        self.min_job_age = min_job_age
        self.cluster_name = cluster_name or f"gnc{os.getpid()}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env: dict[str, str] = {}
        self.start_seconds: float | None = None

    # --- paths -----------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    # --- set-up ----------------------------------------------------------------------------------
    def _write_files(self) -> None:
        r = self.root
        for d in ("etc", "bin", "log", "spool/ctld", "spool/d", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.munge_socket = r / "munge" / "munge.socket"
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        gres = f" Gres=gpu:fake:{self.gpus}" if self.gpus else ""
        parts = "\n".join(
            f"PartitionName={name} Nodes=localhost Default={'YES' if default else 'NO'} "
            "MaxTime=INFINITE State=UP" for name, default in self.partitions.items())
        self.conf.write_text(f"""\
# throwaway single-node cluster written by tests/slurm_cluster.py
ClusterName={self.cluster_name}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/spool/ctld
SlurmdSpoolDir={r}/spool/d
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
MailProg=/bin/true
MinJobAge={self.min_job_age}
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb}{gres} State=UNKNOWN
{parts}
""")
        lines = ["AutoDetect=off"] + [
            f"NodeName=localhost Name=gpu Type=fake File={FAKE_GPU_FILES[i]}" for i in range(self.gpus)]
        (r / "etc" / "gres.conf").write_text("\n".join(lines) + "\n")
        for name in CLIENTS:
            w = self.bin / name
            w.write_text(f"#!/bin/sh\n# this test cluster's client (see tests/slurm_cluster.py)\n"
                         f"SLURM_CONF={shlex.quote(str(self.conf))}\nexport SLURM_CONF\n"
                         f"exec {shlex.quote(_find(name))} \"$@\"\n")
            w.chmod(0o755)
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["SLURM_CONF"] = str(self.conf)
        for var in list(self.env):  # nothing of an outer allocation leaks into ours
            if (var.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and var != "SLURM_CONF"):
                del self.env[var]

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.logs / f"{name}.stdout", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env,
                                            start_new_session=True)
        out.close()

    def start(self, timeout: float = 30.0) -> "LocalSlurm":
        why = unavailable_reason()
        if why:
            raise SlurmUnavailable(why)
        t0 = time.monotonic()
        self._write_files()
        try:
            m = self.root / "munge"
            self._spawn("munged", [_find("munged"), "--foreground", "--force",
                                   f"--socket={self.munge_socket}", f"--key-file={m}/munge.key",
                                   f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
                                   f"--seed-file={m}/munged.seed"])
            self._wait(lambda: self.munge_socket.exists(), timeout, "munged did not create its socket")
            self._spawn("slurmctld", [_find("slurmctld"), "-D", "-f", str(self.conf)])
            self._spawn("slurmd", [_find("slurmd"), "-D", "-f", str(self.conf), "-N", "localhost"])
            self._wait(lambda: self.node_state() in ("idle", "mixed", "allocated"), timeout,
                       "the node did not become idle")
        except Exception:
            diag = self.diagnostics()
            self.stop()
            raise SlurmUnavailable(f"local SLURM did not start:\n{diag}")
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait(self, ok, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited")
            if ok():
                return
            time.sleep(0.1)
        raise TimeoutError(what)

    # --- use -------------------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``sinfo``, ``sbatch``, ...) against this cluster, from its root
        folder: a batch job without ``--output`` writes ``slurm-<id>.out`` there, not in the repository."""
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], env=self.env, check=check, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    def node_state(self) -> str:
        try:
            r = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return r.stdout.split()[0].rstrip("*~#$@+").lower() if r.returncode == 0 and r.stdout.split() else ""

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for ``min_job_age`` s), as key=value dicts
        from ``scontrol -o show job`` (keys such as JobId, JobName, JobState, Partition, Comment,
        NumCPUs, MinMemoryNode, TimeLimit, TresPerJob, AllocTRES, ExitCode)."""
        r = self.run("scontrol", "-o", "show", "job", check=False)
        out = []
        for line in r.stdout.splitlines():
            if not line.strip() or line.startswith("No jobs"):
                continue
            job: dict[str, str] = {}
            for tok in line.split():
                k, sep, v = tok.partition("=")
                if sep and k and k[0].isupper():
                    job[k] = v
            out.append(job)
        return out

    def wait_idle(self, timeout: float = 30) -> bool:
        """True once no job is pending or running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.run("squeue", "-h", "-t", "PD,R,CG,CF,S", "-o", "%i", check=False)
            if r.returncode == 0 and not r.stdout.strip():
                return True
            time.sleep(0.5)
        return False

    def diagnostics(self, lines: int = 15) -> str:
        parts = []
        for name, p in self.procs.items():
            parts.append(f"{name}: pid {p.pid}, " + ("running" if p.poll() is None else f"exit {p.returncode}"))
        for f in sorted(self.logs.glob("*")) + [self.root / "munge" / "munged.log"]:
            if f.is_file():
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {f.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # --- tear-down -------------------------------------------------------------------------------
    def stop(self, timeout: float = 10) -> None:
        """Cancel all jobs, then end slurmd, slurmctld and munged by PID (and reap them)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "-u", "root", check=False, timeout=10)
                self.wait_idle(timeout=min(timeout, 15))
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=timeout)
        self.procs.clear()

    def __enter__(self) -> "LocalSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
