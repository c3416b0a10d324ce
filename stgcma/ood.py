"""Out of its world: how far a clip's features lie from those of the clips a checkpoint was trained on.

A SynthAV model knows SynthAV, not real footage; a dog-barking video still gets confident-looking
event labels. Every checkpoint can carry the statistics of its own features on held-out clips of
its training data (``ood_stats.safetensors`` next to the weights), and analysis reports the
distance of a clip from them with a threshold calibrated on held-out clips.

Features. The tokens after one early encoder block (``default_block``: the first of every six),
per one-second segment and per stream: ``[mean over tokens, std over tokens]`` (2D values). Early
adapted tokens still describe the picture's and the sound's texture (the last block's are shaped
by the task: a music clip and a shapes clip map to the same classes). Measured on the shipped
shapes-world model: the final pooled features do not separate another world from its own, these do.

Statistics, per stream: the mean and a probabilistic-PCA covariance of the segment vectors of a
FIT split (top ``k`` <= 64 eigenpairs, a small ridge, and one variance for the remaining
directions, so the file stays small for 1024-wide backbones; Tipping & Bishop 1999). The distance
of a window of T segments (the model's clip length) is the Mahalanobis distance per dimension of
its least typical segment, and a longer clip's is the median over its windows::

    d(window) = sqrt(max_t ((x_t - mu)^T C^-1 (x_t - mu)) / dim)

(1 is a typical fit-split segment; another world's clips differ in the seconds where their objects
sound, so the max separates worlds better than the mean, measured). The threshold of each stream
is the ``quantile`` (0.99) of the distances of a separate CALIBRATION split of whole clips, so
about 1 in 100 fresh clips of the world is flagged; a clip is out of world when either stream
exceeds its threshold.

``capture`` records the features during a normal forward pass (a forward hook), so analysis pays
nothing extra; ``calibrate_checkpoint`` adds the statistics to an existing checkpoint
(``python -m stgcma calibrate-ood``), and ``fit()`` writes them for the checkpoints it saves.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stgcma.checkpoint import WEIGHTS_NAME, file_sha256

STATS_NAME = "ood_stats.safetensors"
STATS_FORMAT = "stgcma-ood"
STATS_VERSION = 1
STREAMS = ("video", "audio")
MAX_COMPONENTS = 64
NO_STATS_NOTE = ("this checkpoint carries no statistics of its training world, so it cannot tell whether a clip "
                 "is like its training clips (add them with `python -m stgcma calibrate-ood`)")


def default_block(depth: int) -> int:
    """The encoder block whose tokens describe a clip: the first of every six (0 for a 6-block ViT)."""
    return max(0, (depth - 1) // 6)


def world_name(spec: str | Path) -> str:
    """A person's name for the world a data spec describes: "SynthAV Music", "SynthAV Shapes", a folder."""
    text = str(spec)
    if text.startswith("synthav:"):
        from stgcma.data.spec import parse_synthav_spec

        return f"SynthAV {parse_synthav_spec(text).get('world', 'shapes').capitalize()}"
    return Path(text).name or text


def out_of_world_message(world: str) -> str:
    return (f"This clip looks unlike anything this model was trained on ({world}) - "
            "its outputs are not meaningful here")


# ----------------------------------------------------------------------------------------------
# Features


def segment_vectors(tokens: torch.Tensor) -> torch.Tensor:
    """(B*T, N, D) tokens -> (B*T, 2D) float32: mean and std over the tokens of each segment."""
    tokens = tokens.float()
    return torch.cat([tokens.mean(1), tokens.std(1)], -1)


@contextmanager
def capture(model: torch.nn.Module, block: int):
    """Record the segment vectors of ``block`` in every forward pass inside the context.

    Yields a list that receives one ``{"video": (B*T, 2D), "audio": (B*T, 2D)}`` per forward pass
    (CPU float32 tensors).
    """
    records: list[dict[str, torch.Tensor]] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        xv, xa = output
        records.append({"video": segment_vectors(xv.detach()).cpu(), "audio": segment_vectors(xa.detach()).cpu()})

    handle = model.encoder.blocks[block].register_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


def _stack(records: list[dict[str, torch.Tensor]], stream: str) -> np.ndarray:
    return torch.cat([r[stream] for r in records]).numpy().astype(np.float64)


@torch.no_grad()
def collect(model: torch.nn.Module, dataset: Any, n: int, block: int, batch_size: int = 4,
            device: str | torch.device = "cpu", progress: bool = False) -> dict[str, np.ndarray]:
    """Segment vectors of the first ``n`` clips of ``dataset``: ``{stream: (n, T, 2D)}``."""
    from tqdm.auto import tqdm

    model.eval()
    n = min(n, len(dataset))
    out: dict[str, list[np.ndarray]] = {s: [] for s in STREAMS}
    with capture(model, block) as records:
        for start in tqdm(range(0, n, batch_size), desc="world statistics", disable=not progress, leave=False):
            items = [dataset[i] for i in range(start, min(start + batch_size, n))]
            video = torch.stack([it["video"] for it in items]).to(device)  # (B, T, 3, S, S)
            audio = torch.stack([it["audio"] for it in items]).to(device)  # (B, T, 1, F, M)
            model.forward_features(video, audio)
            B, T = video.shape[:2]
            for s in STREAMS:
                out[s].append(_stack(records, s).reshape(B, T, -1))  # (B, T, 2D)
            records.clear()
    return {s: np.concatenate(v) for s, v in out.items()}


# ----------------------------------------------------------------------------------------------
# Statistics


@dataclass
class Gaussian:
    """A probabilistic-PCA Gaussian: mean (F,), basis (k, F), eigenvalues (k,), residual variance."""

    mean: np.ndarray
    basis: np.ndarray
    eigvals: np.ndarray
    residual: float

    @classmethod
    def fit(cls, x: np.ndarray, k: int = MAX_COMPONENTS, ridge: float = 1e-3) -> Gaussian:
        """Fit on rows ``x`` (M, F); ``ridge`` (relative to the mean variance) keeps every direction finite."""
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / max(len(x) - 1, 1)  # (F, F)
        eigvals, vectors = np.linalg.eigh(cov)
        eigvals, vectors = eigvals[::-1].clip(min=0.0), vectors[:, ::-1]
        k = int(min(k, len(x) - 1, x.shape[1] - 1))
        floor = ridge * float(eigvals.mean()) + 1e-12
        residual = float(eigvals[k:].mean()) + floor
        return cls(mean, vectors[:, :k].T.copy(), eigvals[:k] + floor, residual)

    def squared(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance per dimension of rows ``x`` (..., F) -> (...)."""
        xc = x - self.mean
        z = xc @ self.basis.T  # (..., k)
        rest = np.maximum((xc * xc).sum(-1) - (z * z).sum(-1), 0.0)
        return ((z * z / self.eigvals).sum(-1) + rest / self.residual) / self.mean.shape[0]


@dataclass
class WorldStats:
    """The statistics of one checkpoint's features on held-out clips of its training world."""

    block: int
    world: str
    streams: dict[str, Gaussian]
    thresholds: dict[str, float]
    quantile: float = 0.99
    info: dict[str, Any] = field(default_factory=dict)

    def distances(self, vectors: dict[str, np.ndarray]) -> dict[str, float]:
        """``{stream: (S, 2D) segment vectors of one clip}`` -> ``{stream: distance}`` (module docstring)."""
        T = int(self.info.get("segments") or 0)
        out = {}
        for s in STREAMS:
            squared = self.streams[s].squared(np.asarray(vectors[s], np.float64))  # (S,)
            step = T or len(squared)
            out[s] = float(np.sqrt(np.median([squared[i:i + step].max() for i in range(0, len(squared), step)])))
        return out

    def verdict(self, vectors: dict[str, np.ndarray]) -> dict[str, Any]:
        """Distances of one clip, per stream and for the stream furthest beyond (or nearest to) its threshold.

        Returns ``{"out_of_world", "distance", "threshold", "stream", "world", "streams":
        {stream: {"distance", "threshold"}}}``.
        """
        dist = self.distances(vectors)
        worst = max(STREAMS, key=lambda s: dist[s] / self.thresholds[s])
        return {"out_of_world": any(dist[s] > self.thresholds[s] for s in STREAMS),
                "distance": dist[worst], "threshold": self.thresholds[worst], "stream": worst, "world": self.world,
                "streams": {s: {"distance": dist[s], "threshold": self.thresholds[s]} for s in STREAMS}}

    def save(self, folder: str | Path) -> Path:
        """Write ``ood_stats.safetensors`` into the checkpoint ``folder`` (atomically)."""
        folder = Path(folder)
        tensors = {}
        for s, g in self.streams.items():
            tensors.update({f"{s}.mean": g.mean, f"{s}.basis": g.basis, f"{s}.eigvals": g.eigvals})
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in tensors.items()}
        header = {"format": STATS_FORMAT, "version": STATS_VERSION, "block": self.block, "world": self.world,
                  "quantile": self.quantile, "thresholds": self.thresholds,
                  "residual": {s: g.residual for s, g in self.streams.items()}, **self.info}
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{STATS_NAME}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"ood": json.dumps(header)})
            os.chmod(tmp, 0o644)
            os.replace(tmp, folder / STATS_NAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return folder / STATS_NAME


def fit_world_stats(vectors: dict[str, np.ndarray], block: int, world: str, fit_fraction: float = 0.5,
                    quantile: float = 0.99, k: int = MAX_COMPONENTS) -> WorldStats:
    """Statistics from ``{stream: (n, T, 2D)}`` clip features: fit on the first part, threshold on the rest."""
    n = len(vectors["video"])
    n_fit = int(round(n * fit_fraction))
    if n_fit < 2 or n - n_fit < 2:
        raise ValueError(f"world statistics need at least 4 clips (2 to fit, 2 to calibrate); got {n}")
    streams, thresholds = {}, {}
    for s in STREAMS:
        x = vectors[s]
        streams[s] = Gaussian.fit(x[:n_fit].reshape(-1, x.shape[-1]), k)
        calib = np.sqrt(streams[s].squared(x[n_fit:]).max(1))  # (n_cal,) one distance per clip
        thresholds[s] = float(np.quantile(calib, quantile))
    info = {"clips_fit": n_fit, "clips_calibration": n - n_fit, "segments": int(vectors["video"].shape[1])}
    return WorldStats(block, world, streams, thresholds, quantile, info)


def read_world_stats(folder: str | Path | None) -> tuple[WorldStats | None, str | None]:
    """The statistics stored in a checkpoint folder, or ``(None, why not)``.

    Statistics computed for other weights than the folder's (the checkpoint was overwritten) are
    ignored: they would describe another model's features.
    """
    if folder is None:
        return None, NO_STATS_NOTE
    path = Path(folder) / STATS_NAME
    if not path.exists():
        return None, NO_STATS_NOTE
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            header = json.loads((f.metadata() or {}).get("ood", "{}"))
        tensors = load_file(str(path))
    except (OSError, ValueError, json.JSONDecodeError) as err:
        return None, f"the world statistics in {path.name} cannot be read ({err})"
    if header.get("format") != STATS_FORMAT:
        return None, f"{path.name} is not a world-statistics file"
    weights = Path(folder) / WEIGHTS_NAME
    if header.get("weights_sha256") and weights.exists() and file_sha256(weights) != header["weights_sha256"]:
        return None, ("the world statistics were computed for other weights than this checkpoint's "
                      "(run `python -m stgcma calibrate-ood` again)")
    streams = {s: Gaussian(tensors[f"{s}.mean"].double().numpy(), tensors[f"{s}.basis"].double().numpy(),
                           tensors[f"{s}.eigvals"].double().numpy(), float(header["residual"][s])) for s in STREAMS}
    info = {k: v for k, v in header.items()
            if k not in ("format", "version", "block", "world", "quantile", "thresholds", "residual")}
    return WorldStats(int(header["block"]), str(header["world"]), streams,
                      {s: float(v) for s, v in header["thresholds"].items()}, float(header["quantile"]), info), None


def load_world_stats(folder: str | Path | None) -> WorldStats | None:
    """``read_world_stats`` without the reason: None for a checkpoint without (valid) statistics."""
    return read_world_stats(folder)[0]


# ----------------------------------------------------------------------------------------------
# Writing statistics into checkpoints


def write_world_stats(model: torch.nn.Module, folder: str | Path, dataset: Any, world: str, n: int = 200,
                      batch_size: int = 4, device: str | torch.device = "cpu", progress: bool = False,
                      block: int | None = None, quantile: float = 0.99, source: str | None = None) -> WorldStats:
    """Compute the statistics of ``model`` on ``n`` clips of ``dataset`` and store them in ``folder``.

    ``model`` must hold the weights saved in ``folder`` (the file records their hash).
    """
    block = default_block(len(model.encoder.blocks)) if block is None else block
    vectors = collect(model, dataset, n, block, batch_size, device, progress)
    stats = fit_world_stats(vectors, block, world, quantile=quantile)
    stats.info["weights_sha256"] = file_sha256(Path(folder) / WEIGHTS_NAME)
    if source is not None:
        stats.info["data"] = source
    stats.save(folder)
    return stats


def carry_world_stats(source: str | Path, target: str | Path) -> WorldStats | None:
    """Copy ``source``'s statistics to ``target``, a checkpoint with the same encoder and another head.

    The statistics describe encoder features only, so a head refit keeps them valid; they are
    re-stamped with the target's weights hash. Returns None (and writes nothing) when ``source``
    has no valid statistics.
    """
    stats, _ = read_world_stats(source)
    if stats is not None:
        stats.info["weights_sha256"] = file_sha256(Path(target) / WEIGHTS_NAME)
        stats.info["carried_from"] = "the same encoder before its head was refitted"
        stats.save(target)
    return stats


def calibrate_checkpoint(source: str | Path, data: str, task: str | None = None, split: str = "val", n: int = 200,
                         batch_size: int = 4, device: str = "cpu", progress: bool = False,
                         quantile: float = 0.99) -> tuple[Path, WorldStats]:
    """Add world statistics to an existing checkpoint (a folder, a run folder or ``default``)."""
    from stgcma.checkpoint import load_model, resolve_source
    from stgcma.data.spec import build_dataset
    from stgcma.data.vocab import Vocab

    folder = resolve_source(source, task)
    model, meta = load_model(folder, device=device)
    task = model.config.head.task
    extra = {}
    if task == "avqa":
        extra["question_vocab"] = Vocab(meta["question_vocab"][2:], meta.get("question_max_len", 14))
    dataset = build_dataset(data, task, split, model.config.preprocess, **extra)
    if task == "ave" and list(dataset.class_names) != list(meta.get("class_names", dataset.class_names)):
        raise ValueError(f"the dataset's classes {dataset.class_names[:4]}... differ from the checkpoint's "
                         f"{meta['class_names'][:4]}...: calibrate on the data the model was trained on")
    stats = write_world_stats(model, folder, dataset, world_name(data), n, batch_size, device, progress,
                              quantile=quantile, source=f"{data} ({split})")
    return folder, stats
