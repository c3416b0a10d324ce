"""Train tab: launch a fine-tuning run, watch its curves and log live, cancel or resume it, load it into the demo.

Runs are ``python -m stgcma train`` subprocesses (``torchrun`` for several GPUs) managed by
``app.jobs``; a ``gr.Timer`` polls the run's CSVs every few seconds while it runs. The tab is off
unless the operator starts the app with ``--enable-training`` (or ``STGCMA_ENABLE_TRAINING=1``);
"Load into demo" loads a run's checkpoint for the visitor's own session only.

One place says where a run stands (the run line above the curves); the action line under the
buttons only adds what the run line cannot (notes, what Resume will do, errors), never repeats it.
"""

from __future__ import annotations

import dataclasses
import html
import shlex
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from app.errors import guarded, status_html
from app.jobs import JobError, JobSpec, checkpoint_of, log_tail, read_curves
from app.state import AppContext, Session
from stgcma.checkpoint import DEFAULT_DIR
from stgcma.config import list_presets
from stgcma.inference import available_devices

RATIOS = [("preset default", "default"), ("1/16 (0.0625)", "0.0625"), ("1/8 (0.125)", "0.125"),
          ("1/4 (0.25)", "0.25"), ("1/2 (0.5)", "0.5")]
DEFAULT_DATA = {"ave": "synthav:seed=0,n=64", "avs": "synthav:seed=0,n=64,mode=s4", "avqa": "synthav:seed=0,n=64"}
POLL_SECONDS = 2.0
EPOCH_COLUMNS = ["epoch", "train_loss", "val_loss", "val_select", "seconds"]
STATE_KIND = {"running": "info", "finished": "ok", "failed": "error", "cancelled": "warn", "stopped": "warn"}
MARKERS_UP_TO = 30  # points per curve below which every point gets a marker (a 1-point curve is a dot)
TRAINING_OFF = ("Training is off in this app. To train adapters, start the app on a machine you control with "
                "<code>python app.py --enable-training</code> (or <code>STGCMA_ENABLE_TRAINING=1</code>); when it "
                "listens beyond this computer it also needs a login (<code>STGCMA_AUTH=user:password</code> or "
                "<code>STGCMA_AUTH_FILE</code>). The command line trains too: "
                "<code>python -m stgcma train --help</code>.")


def curve_figure(rows: list[dict[str, Any]], x: str, y: str, group: str | None, title: str, xlabel: str,
                 ylabel: str) -> Figure:
    """A line chart with integer x ticks; short curves get markers, a legend only when it names something."""
    fig = Figure(figsize=(5.2, 2.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        series.setdefault(str(row[group]) if group else y, []).append((row[x], row[y]))
    for name, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o" if len(xs) <= MARKERS_UP_TO else None, markersize=4, linewidth=1.5,
                label=name if group else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if group and series:
        ax.legend(fontsize=8, loc="best")
    if not series:
        ax.text(0.5, 0.5, "no points yet", ha="center", va="center", transform=ax.transAxes, alpha=0.6)
    return fig


def loss_figure(steps: list[dict[str, Any]]) -> Figure:
    return curve_figure(steps, "step", "loss", None, "Training loss per step", "optimizer step", "loss")


def val_figure(metrics: list[dict[str, Any]]) -> Figure:
    return curve_figure(metrics, "epoch", "value", "metric", "Validation metrics per epoch", "epoch", "value")


def default_backbone() -> Path:
    """The image-pretrained SynthAV backbone shipped with the embedded default (if built)."""
    return Path(DEFAULT_DIR) / "backbone" / "model.safetensors"


class TrainTab:
    """The training form, the run monitor and the run's actions."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.enabled = bool(ctx.training)
        self.gpus = available_devices()["cuda"]

    def require_enabled(self) -> None:
        if not self.enabled:
            raise JobError("Training is off in this app: the operator starts it with python app.py --enable-training.")

    def run_choices(self) -> list[tuple[str, str]]:
        root = self.ctx.jobs.runs_root
        return [(str(p.relative_to(root)) if p.is_relative_to(root) else str(p), str(p))
                for p in self.ctx.jobs.list_runs()]

    def build(self) -> None:
        """The form and the monitor; only a note on how to turn training on when it is off."""
        if not self.enabled:
            gr.HTML(status_html(TRAINING_OFF, "info", code=True))
            return
        presets = list_presets()
        preset = "synth-vit" if default_backbone().exists() and "synth-vit" in presets else "vit-test"
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                gr.Markdown("#### New run")
                self.task = gr.Dropdown([("AVE (events)", "ave"), ("AVS (sounding objects)", "avs"),
                                         ("AVQA (questions)", "avqa")], value="ave", label="Task")
                self.preset = gr.Dropdown(presets, value=preset, label="Backbone preset",
                                          info="python -m stgcma params lists the paper presets")
                self.ratio = gr.Dropdown(RATIOS, value="default", label="Adapter size (bottleneck ratio)")
                self.data = gr.Textbox(DEFAULT_DATA["ave"], label="Data: dataset folder or SynthAV spec",
                                       info="e.g. /data/AVE, or synthav:seed=0,n=64 (generated on the fly)")
                with gr.Row():
                    self.epochs = gr.Number(5, label="Epochs", precision=0, minimum=1)
                    self.batch = gr.Number(4, label="Batch size", precision=0, minimum=1)
                    self.lr = gr.Number(0, label="Learning rate", info="0: the task's default")
                self.gpu_count = gr.Slider(0, max(1, self.gpus), value=min(1, self.gpus), step=1, label="GPUs",
                                           info=f"{self.gpus} CUDA device(s); more than 1 runs under torchrun",
                                           visible=self.gpus > 0)
                if not self.gpus:
                    gr.Markdown("No CUDA device found: training runs on the CPU.", elem_classes=["stg-note"])
                self.memory = gr.Checkbox(False, label="Memory mode (activation checkpointing)",
                                          info="recomputes each block in the backward pass: less memory, "
                                               "slower steps (python -m stgcma bench train measures both); "
                                               "checkpoint_fraction=0.75 in the settings recomputes 3 blocks "
                                               "in 4")
                self.settings = gr.Textbox(label="More settings (key=value, space separated)",
                                           placeholder="warmup_epochs=1 adapter.temporal=false",
                                           info="compile=true: torch.compile, faster steps after a slow first "
                                                "one (minutes on a CPU)")
                self.name = gr.Textbox(label="Run name (optional)", placeholder="ave-ratio-0.125")
                self.launch = gr.Button("Launch", variant="primary")
            with gr.Column(scale=2):
                gr.Markdown("#### Runs")
                with gr.Row():
                    self.run = gr.Dropdown(self.run_choices(), value=None, label="Run", scale=4,
                                           allow_custom_value=False)
                    self.refresh = gr.Button("Refresh", scale=1)
                self.run_status = gr.HTML()
                with gr.Row():
                    self.loss_plot = gr.Plot(loss_figure([]), show_label=False, format="png")
                    self.val_plot = gr.Plot(val_figure([]), show_label=False, format="png")
                self.epochs_table = gr.Dataframe(headers=EPOCH_COLUMNS, label="Epochs", interactive=False,
                                                 max_height=200)
                self.log = gr.Textbox(label="Log (last lines)", lines=10, max_lines=10, interactive=False,
                                      autoscroll=True)
                with gr.Row():
                    self.cancel = gr.Button("Cancel run", variant="stop")
                    self.resume = gr.Button("Resume run")
                    self.load = gr.Button("Load into demo", variant="primary")
                self.status = gr.HTML()
        self.timer = gr.Timer(POLL_SECONDS, active=False)

    def monitor_outputs(self) -> list[Any]:
        return [self.loss_plot, self.val_plot, self.epochs_table, self.log, self.run_status, self.timer]

    def form_inputs(self) -> list[Any]:
        return [self.task, self.preset, self.ratio, self.data, self.epochs, self.batch, self.lr, self.gpu_count,
                self.settings, self.name, self.memory]

    def spec(self, task: str, preset: str, ratio: str, data: str, epochs: float | None, batch: float | None,
             lr: float | None, gpus: float | None, settings: str, name: str,
             memory: bool = False) -> tuple[JobSpec, list[str]]:
        """The form as a JobSpec, and notes about what was added on the person's behalf."""
        notes = []
        extra = shlex.split(settings or "")
        if preset == "synth-vit" and default_backbone().exists() and not any(
                s.startswith("backbone.pretrained=") for s in extra):
            extra.append(f"backbone.pretrained={default_backbone().resolve()}")
            notes.append("using the embedded default's image-pretrained backbone")
        run = self.ctx.jobs.new_run_dir(task, preset, name or "")
        spec = JobSpec(task=task, preset=preset, data=(data or "").strip(), out=str(run), epochs=int(epochs or 1),
                       batch_size=int(batch or 1), lr=float(lr) if lr else None,
                       adapter_ratio=None if ratio in (None, "", "default") else float(ratio),
                       gpus=int(gpus or 0) if self.gpus else 0, settings=extra, checkpointing=bool(memory))
        return spec, notes

    @guarded(3, toast=False)
    def start(self, task: str, preset: str, ratio: str, data: str, epochs: float | None, batch: float | None,
              lr: float | None, gpus: float | None, settings: str, name: str,
              memory: bool = False) -> tuple[Any, ...]:
        """Launch a run from the form and select it in the monitor."""
        self.require_enabled()
        spec, notes = self.spec(task, preset, ratio, data, epochs, batch, lr, gpus, settings, name, memory)
        run = self.ctx.jobs.start(spec)
        note = status_html(f"Note: {'; '.join(notes)}.", "info") if notes else ""
        return gr.update(choices=self.run_choices(), value=str(run)), gr.Timer(active=True), note

    def poll(self, run: str | None) -> tuple[Any, ...]:
        """Curves, epochs, log and state of ``run``; the timer stays on only while it runs."""
        empty_epochs = pd.DataFrame(columns=EPOCH_COLUMNS)
        if not run:
            return loss_figure([]), val_figure([]), empty_epochs, "", "", gr.Timer(active=False)
        try:
            status = self.ctx.jobs.status(run)
            curves = read_curves(run)
            tail = log_tail(run)
        except OSError as err:
            return (loss_figure([]), val_figure([]), empty_epochs, "",
                    status_html(f"cannot read {Path(run).name}: {err.strerror or err}", "error"),
                    gr.Timer(active=False))
        loss, val = loss_figure(curves.steps), val_figure(curves.val_metrics)
        epochs = pd.DataFrame([{k: e[k] for k in EPOCH_COLUMNS} for e in curves.epochs], columns=EPOCH_COLUMNS)
        state = status["state"]
        checkpoint = status["checkpoint"]
        text = (f"<b>{html.escape(Path(run).name)}</b>: {state} · {status['epochs_done']} epoch(s) done"
                + (f" · checkpoint <code>{html.escape(checkpoint.name)}/</code>" if checkpoint else ""))
        if state == "failed":
            text += f" · exit code {status['returncode']} (see the log)"
        return (loss, val, epochs, tail, status_html(text, STATE_KIND.get(state, "info"), code=True),
                gr.Timer(active=state == "running"))

    @guarded(2, toast=False)
    def cancel_run(self, run: str | None) -> tuple[Any, ...]:
        """SIGTERM, then SIGKILL: stop the selected run (finished epochs stay on disk; Resume continues)."""
        if not run:
            raise JobError("Select a run first.")
        self.ctx.jobs.cancel(run)
        done = len(read_curves(run).epochs)
        after = (f"Resume continues with epoch {done + 1}." if done else
                 "No epoch had finished, so Resume starts the run again from the beginning.")
        return gr.Timer(active=False), status_html(after, "info")

    @guarded(2, toast=False)
    def resume_run(self, run: str | None) -> tuple[Any, ...]:
        self.require_enabled()
        if not run:
            raise JobError("Select a run first.")
        self.ctx.jobs.resume(run)
        return gr.Timer(active=True), ""

    @guarded(3, toast=False)
    def load_run(self, run: str | None, session: Session) -> tuple[Any, ...]:
        """Load the run's checkpoint into THIS session's demo tabs (other visitors keep the app's model)."""
        if not run:
            raise JobError("Select a run first.")
        checkpoint = checkpoint_of(run)
        if checkpoint is None:
            raise JobError(f"{Path(run).name} has no checkpoint yet: wait for its first epoch to finish.")
        label = f"{self.ctx.holder.label} + run {Path(run).name} ({checkpoint.name})"
        model = self.ctx.holder.load_for_session(checkpoint, label)
        running = self.ctx.jobs.status(run)["state"] == "running"
        note = " The run is still training: this is its best checkpoint so far." if running else ""
        return dataclasses.replace(session, model=model), self.ctx.holder.status_html(
            dataclasses.replace(session, model=model)), status_html(
            f"Loaded into your demo tabs only (other visitors keep the app's model).{note} "
            "Analyse again to see its results.", "ok")

    def on_task(self, task: str, data: str) -> Any:
        """Switching task: suggest the matching SynthAV spec unless a folder was typed."""
        if not data or data.startswith("synthav:"):
            return gr.update(value=DEFAULT_DATA.get(task, DEFAULT_DATA["ave"]))
        return gr.update()

    def refresh_runs(self, run: str | None) -> Any:
        choices = self.run_choices()
        return gr.update(choices=choices, value=run if run in [v for _, v in choices] else None)
