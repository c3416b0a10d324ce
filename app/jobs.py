"""Training jobs for the Train tab: start, watch, cancel and resume ``python -m stgcma train`` runs.

Pure Python (no Gradio): each job is a subprocess in its own process group (so cancelling also
stops torchrun's workers), its output streamed to ``RUN_DIR/train.log``, and a ``job.json`` next
to it recording the command, pid and exit, so a restarted app still knows its runs. Curves are read
from the run's ``steps.csv`` and ``metrics.csv`` (written by ``stgcma.train``).

The command is a fixed argument list (never a shell) built from checked values: a known task and
preset, a SynthAV spec or an existing folder, bounded numbers, ``key=value`` settings with plain
keys (the form's own keys cannot be overridden). One manager runs at most ``max_running`` jobs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOG_NAME = "train.log"
JOB_NAME = "job.json"
TASKS = ("ave", "avs", "avqa")
MAX_EPOCHS = 1000
MAX_BATCH = 4096
SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=\S+")
FORM_KEYS = ("task", "preset", "data", "out", "epochs", "batch_size", "lr", "device", "adapter.ratio",
             "checkpointing")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class JobError(ValueError):
    """A job cannot be started, found or cancelled; the message is one line for the person."""


@dataclass
class JobSpec:
    """What the Train tab asks for; ``command()`` turns it into the training command line."""

    task: str
    preset: str
    data: str
    out: str
    epochs: int = 5
    batch_size: int = 4
    lr: float | None = None
    adapter_ratio: float | None = None
    gpus: int = 0
    settings: list[str] = field(default_factory=list)
    checkpointing: bool = False  # memory mode: recompute the frozen blocks in the backward pass

    def check(self) -> None:
        """Refuse what the trainer would refuse later, and anything that is not a plain value, with the reason."""
        from stgcma.config import list_presets

        if self.task not in TASKS:
            raise JobError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if not self.preset:
            raise JobError("pick a model preset")
        if self.preset not in list_presets():
            raise JobError(f"unknown preset {self.preset!r}; python -m stgcma params lists them")
        if not self.data.strip():
            raise JobError("give a dataset folder or a SynthAV spec such as synthav:seed=0,n=64")
        if not self.data.startswith("synthav:") and not Path(self.data).expanduser().is_dir():
            raise JobError(f"dataset folder {self.data!r} not found (or use synthav:seed=0,n=64)")
        if not (1 <= self.epochs <= MAX_EPOCHS and 1 <= self.batch_size <= MAX_BATCH):
            raise JobError(f"epochs must lie in 1..{MAX_EPOCHS} and the batch size in 1..{MAX_BATCH}")
        if self.lr is not None and not self.lr > 0:
            raise JobError("the learning rate must be positive (leave it empty for the task default)")
        if self.adapter_ratio is not None and not 0 < self.adapter_ratio <= 1:
            raise JobError("the adapter ratio must lie in (0, 1]")
        if self.gpus > 1 and self.batch_size % self.gpus:
            raise JobError(f"batch size {self.batch_size} must be divisible by the {self.gpus} GPUs")
        if self.gpus < 0:
            raise JobError("the GPU count cannot be negative")
        for item in self.settings:
            if not SETTING.fullmatch(item):
                raise JobError(f"setting {item!r} must look like key=value, e.g. warmup_epochs=1")
            if item.split("=", 1)[0] in FORM_KEYS:
                raise JobError(f"set {item.split('=', 1)[0]} with the form, not in the settings")

    def command(self) -> list[str]:
        """``python -m stgcma train ...``, under ``torch.distributed.run`` (torchrun) for several GPUs."""
        args = ["-m", "stgcma", "train", "--task", self.task, "--preset", self.preset, "--data", self.data,
                "--out", self.out, f"epochs={self.epochs}", f"batch_size={self.batch_size}"]
        if self.lr is not None:
            args.append(f"lr={self.lr}")
        if self.adapter_ratio is not None:
            args.append(f"adapter.ratio={self.adapter_ratio}")
        args.append("device=cpu" if self.gpus == 0 else "device=cuda")
        if self.checkpointing:
            args.append("checkpointing=true")
        args.extend(self.settings)
        if self.gpus > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={self.gpus}", *args]
        return [sys.executable, *args]


@dataclass
class Curves:
    """A run's curves: per optimizer step and per epoch (plain dicts, ready for a DataFrame)."""

    steps: list[dict[str, float]]
    epochs: list[dict[str, Any]]
    val_metrics: list[dict[str, Any]]


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process that looks like a training job."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if (proc / "stat").read_text().split(")")[-1].split()[0] == "Z":
                return False
            return b"stgcma" in (proc / "cmdline").read_bytes()
        except OSError:
            return False
    return True


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _rows(path: Path) -> list[dict[str, str]]:
    """CSV rows; a half-written last line (the trainer is appending) is dropped."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(text.splitlines()))


def read_curves(run: str | Path) -> Curves:
    """Loss per step and validation per epoch; a step or epoch logged twice (resume) keeps the last."""
    run = Path(run)
    steps: dict[int, dict[str, float]] = {}
    for row in _rows(run / "steps.csv"):
        step, loss = _number(row.get("step")), _number(row.get("loss"))
        if step is not None and loss is not None:
            steps[int(step)] = {"step": int(step), "epoch": _number(row.get("epoch")) or 0, "loss": loss,
                                "lr": _number(row.get("lr")) or 0.0}
    epochs: dict[int, dict[str, Any]] = {}
    for row in _rows(run / "metrics.csv"):
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        try:
            metrics = json.loads(row.get("val_metrics") or "{}")
        except json.JSONDecodeError:
            metrics = {}
        epochs[int(epoch)] = {"epoch": int(epoch), "train_loss": _number(row.get("train_loss")),
                              "val_loss": _number(row.get("val_loss")), "val_select": _number(row.get("val_select")),
                              "seconds": _number(row.get("seconds")), "metrics": metrics}
    ordered = [epochs[k] for k in sorted(epochs)]
    val = [{"epoch": e["epoch"], "metric": name, "value": float(value)} for e in ordered
           for name, value in e["metrics"].items()
           if name not in ("loss", "select") and isinstance(value, (int, float))]
    return Curves([steps[k] for k in sorted(steps)], ordered, val)


def log_tail(run: str | Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of the run's log, progress-bar redraws (``\\r``) collapsed."""
    path = Path(run) / LOG_NAME
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        text = f.read().decode("utf-8", errors="replace")
    shown = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            shown.append(parts[-1])
    return "\n".join(shown[-lines:])


def checkpoint_of(run: str | Path) -> Path | None:
    """The checkpoint a run offers: the one its summary selected, else best/, else last/."""
    run = Path(run)
    names = []
    summary = run / "summary.json"
    if summary.exists():
        try:
            names.append(json.loads(summary.read_text()).get("selected", "best"))
        except (OSError, json.JSONDecodeError):
            pass
    for name in (*names, "best", "last"):
        if (run / name / "adapter_config.json").exists():
            return run / name
    return None


class JobManager:
    """Start, watch and stop training runs under ``runs_root`` (one subprocess each)."""

    def __init__(self, runs_root: str | Path = "runs", cwd: str | Path = ROOT, max_running: int = 1) -> None:
        self.runs_root = Path(runs_root)
        self.cwd = Path(cwd)
        self.max_running = max_running
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def new_run_dir(self, task: str, preset: str, name: str = "") -> Path:
        """A fresh folder name under the runs root: NAME, or TASK-PRESET-DATE-TIME."""
        stem = name.strip() or f"{task}-{Path(preset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not RUN_NAME.fullmatch(stem) or stem in (".", ".."):
            raise JobError(f"run name {stem!r} must be a plain folder name (letters, digits, . _ -)")
        run = self.runs_root / stem
        if (run / "config.json").exists() or (run / JOB_NAME).exists():
            raise JobError(f"run {run} already exists: pick another name, or select it and press Resume")
        return run

    def start(self, spec: JobSpec) -> Path:
        """Launch ``spec`` in its own process group; returns the run folder."""
        spec.check()
        run = Path(spec.out)
        if (run / "config.json").exists():
            raise JobError(f"run {run} already exists: select it and press Resume")
        return self._launch(run, spec.command(), spec.__dict__)

    def resume(self, run: str | Path) -> Path:
        """Continue a stopped run from its last finished epoch.

        A run stopped before the trainer wrote its ``config.json`` (cancelled while its data was being
        generated or its model built) has nothing to continue from: it is started again with the
        command recorded in its ``job.json``.
        """
        run = Path(run)
        if self.status(run)["state"] == "running":
            raise JobError(f"{run.name} is still running")
        if (run / "summary.json").exists():
            raise JobError(f"{run.name} has finished; start a new run to train more")
        if not (run / "config.json").exists():
            job = self._read_job(run)
            command, spec = job.get("command"), job.get("spec") or {}
            if not command or spec.get("resume") or "--resume" in command:
                raise JobError(f"{run.name} is not a training run (no config.json)")
            return self._launch(run, list(command), spec)
        return self._launch(run, [sys.executable, "-m", "stgcma", "train", "--resume", str(run)], {"resume": True})

    def running(self) -> list[Path]:
        """The runs this manager started that are still running."""
        return [Path(key) for key, proc in self._procs.items() if proc.poll() is None]

    def _launch(self, run: Path, command: list[str], spec: dict[str, Any]) -> Path:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.cwd), env.get("PYTHONPATH", "")) if p)
        with self._lock:
            busy = self.running()
            if len(busy) >= self.max_running:
                names = ", ".join(p.name for p in busy)
                raise JobError(f"{names} is still training and this app runs {self.max_running} job(s) at a time: "
                               "wait for it to finish or cancel it")
            run.mkdir(parents=True, exist_ok=True)
            log = open(run / LOG_NAME, "ab")
            try:
                log.write(f"$ {' '.join(command)}\n".encode())
                log.flush()
                proc = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            finally:
                log.close()
            self._procs[str(run.resolve())] = proc
            self._write_job(run, {"command": command, "spec": spec, "pid": proc.pid, "started": time.time(),
                                  "returncode": None, "cancelled": False})
        return run

    @staticmethod
    def _read_job(run: Path) -> dict[str, Any]:
        try:
            return json.loads((run / JOB_NAME).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    @staticmethod
    def _write_job(run: Path, job: dict[str, Any]) -> None:
        tmp = run / f".{JOB_NAME}.tmp"
        tmp.write_text(json.dumps(job, indent=2))
        os.replace(tmp, run / JOB_NAME)

    def status(self, run: str | Path) -> dict[str, Any]:
        """``{"state": running|finished|failed|cancelled|stopped|new, "returncode", "epochs_done", "run"}``."""
        run = Path(run)
        job = self._read_job(run)
        proc = self._procs.get(str(run.resolve()))
        if proc is not None and proc.poll() is not None and job.get("returncode") is None:
            job["returncode"] = proc.returncode
            self._write_job(run, job)
        running = proc.poll() is None if proc is not None else bool(job.get("pid")) and \
            job.get("returncode") is None and _alive(int(job["pid"]))
        if running:
            state = "running"
        elif (run / "summary.json").exists():
            state = "finished"
        elif job.get("cancelled"):
            state = "cancelled"
        elif job.get("returncode") not in (None, 0):
            state = "failed"
        elif (run / "config.json").exists() or job:
            state = "stopped"
        else:
            state = "new"
        return {"run": str(run), "state": state, "returncode": job.get("returncode"),
                "epochs_done": len(read_curves(run).epochs), "checkpoint": checkpoint_of(run)}

    def cancel(self, run: str | Path, grace_s: float = 10.0) -> str:
        """SIGTERM the run's process group, then SIGKILL after ``grace_s``; returns the final state."""
        run = Path(run)
        job = self._read_job(run)
        proc = self._procs.get(str(run.resolve()))
        pid = proc.pid if proc is not None else job.get("pid")
        if not pid or self.status(run)["state"] != "running":
            raise JobError(f"{run.name} is not running")
        job["cancelled"] = True
        self._write_job(run, job)
        self._signal(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self._running(proc, int(pid)):
            time.sleep(0.1)
        if self._running(proc, int(pid)):
            self._signal(int(pid), signal.SIGKILL)
            if proc is not None:
                proc.wait(timeout=10)
        if proc is not None:
            job["returncode"] = proc.wait(timeout=10)
            self._write_job(run, job)
        return self.status(run)["state"]

    @staticmethod
    def _running(proc: subprocess.Popen | None, pid: int) -> bool:
        return proc.poll() is None if proc is not None else _alive(pid)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # the job leads its own process group (start_new_session)
        except ProcessLookupError:
            pass

    def wait(self, run: str | Path, timeout: float | None = None) -> str:
        """Block until the run's process ends (a job this manager started); returns the final state."""
        proc = self._procs.get(str(Path(run).resolve()))
        if proc is not None:
            proc.wait(timeout=timeout)
        return self.status(run)["state"]

    def list_runs(self) -> list[Path]:
        """Run folders under the runs root (one or two levels down), newest first."""
        if not self.runs_root.exists():
            return []
        found = {p.parent for pattern in ("*/config.json", "*/*/config.json", f"*/{JOB_NAME}")
                 for p in self.runs_root.glob(pattern)}
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
