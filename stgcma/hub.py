"""Share adapter checkpoints: ``save_pretrained`` (checkpoint + model card) and ``push_to_hub`` (huggingface_hub).

A shared checkpoint is the adapter-only folder of :mod:`stgcma.checkpoint` plus a generated
``README.md`` model card (the frozen backbone and where its weights come from, task, training data,
metrics with the command that measures them, parameter counts, licence). Loading needs no code from
here: ``load_model("owner/name")`` and ``Predictor.from_pretrained("owner/name")`` fetch a repo through
``huggingface_hub.snapshot_download`` (its cache and ``HF_HUB_OFFLINE`` are honoured).

A checkpoint whose frozen backbone is a local weights file (e.g. the embedded default's ``synth-vit``)
gets a copy of that file in ``backbone/``, so the repo is complete; backbones named by a source tag
(``openai``, ``in22k``) are fetched from their own source by whoever loads the repo.

Uploading fails fast with a clear message when ``HF_HUB_OFFLINE`` is set, before any network call.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from stgcma.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_write_bytes,
    read_checkpoint_config,
    resolve_source,
    save_checkpoint,
)
from stgcma.config import ModelConfig

CARD_NAME = "README.md"
BACKBONE_DIR = "backbone"
TASK_NAMES = {"ave": "audio-visual event localisation (AVE)", "avs": "audio-visual segmentation (AVSBench)",
              "avqa": "audio-visual question answering (MUSIC-AVQA)"}
# backbone -> (weights source for the card, licence of those weights)
BACKBONE_WEIGHTS = {
    "clip-vit-b16": ("OpenAI CLIP ViT-B/16 (`open_clip`, pretrained='openai')", "MIT"),
    "clip-vit-l14": ("OpenAI CLIP ViT-L/14 (`open_clip`, pretrained='openai')", "MIT"),
    "timm-clip-vit-l14": ("OpenAI CLIP ViT-L/14 (`timm` vit_large_patch14_clip_224.openai)", "MIT"),
    "swin-b": ("Swin-B ImageNet-22k (`timm` swin_base_patch4_window7_224.ms_in22k)", "MIT"),
    "swin-l": ("Swin-L ImageNet-22k (`timm` swin_large_patch4_window7_224.ms_in22k)", "MIT"),
}
# backbone -> how its weights were made, when they come from a local file (e.g. the embedded default's)
BACKBONE_PRETRAINING = {"synth-vit": "image-only pretraining on SynthAV Music frames (no audio)"}
SELECT = {"ave": "accuracy", "avs": "miou", "avqa": "accuracy"}


class HubError(RuntimeError):
    """Publishing cannot happen (offline, not a checkpoint...); the message says what to do."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, now or when huggingface_hub was imported."""
    from huggingface_hub import constants

    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    flags = (os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in names)
    return any(flags) or bool(constants.HF_HUB_OFFLINE)


def checkpoint_files(folder: str | Path) -> list[str]:
    """The files a shared checkpoint consists of, relative to ``folder``: every visible plain file at the top
    (the weights, the config, any small file written beside them, the card) and the copied backbone."""
    folder = Path(folder)
    names = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if (folder / BACKBONE_DIR).is_dir():
        names += [f"{BACKBONE_DIR}/{p.name}" for p in (folder / BACKBONE_DIR).iterdir()
                  if p.is_file() and not p.name.startswith(".")]
    return sorted(names)


def _num_trainable(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_NAME), "pt") as f:
        return sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())


def _prod(shape: list[int]) -> int:
    out = 1
    for n in shape:
        out *= int(n)
    return out


def _total_params(config: ModelConfig) -> int | None:
    """All parameters of the model (frozen trunk counted once), built with random backbone weights."""
    from stgcma.config import apply_overrides
    from stgcma.model import STGCMAModel

    try:
        with torch.random.fork_rng(devices=[]):
            model = STGCMAModel(apply_overrides(config, {"backbone.pretrained": None}))
        return model.parameter_counts()["total"]
    except Exception:  # noqa: BLE001 -- a count is a nicety on the card, never a reason not to share
        return None


def _fmt_metrics(metrics: dict[str, Any]) -> list[str]:
    return [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in metrics.items() if k != "select"]


def _is_local_weights(pretrained: str | None) -> bool:
    """Whether ``backbone.pretrained`` names a weights file (else None, or a source tag such as "openai")."""
    return bool(pretrained) and ("/" in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors")))


def checkpoint_facts(folder: str | Path, *, data: str | None = None, trainable_params: int | None = None,
                     total_params: int | None = None, license: str = "mit") -> dict[str, Any]:
    """What a model card says about the checkpoint in ``folder``, as plain data (no server paths inside).

    Args:
        folder: a checkpoint folder.
        data: the training data; default: the run's ``config.json`` beside the folder, else "not recorded".
        trainable_params: trained parameters; default: counted from the weights file.
        total_params: all parameters; default: counted by building the model with random backbone weights.
        license: licence id of the adapter weights (for bundled backbone weights).

    Returns:
        task, task_name, num_classes, preset, backbone, weights (where the frozen backbone's weights come from:
        a source, a file NAME, or random), weights_licence, adapters, trainable, total (None when it cannot be
        counted), data, inputs, val (the validation metrics stored in the checkpoint), epoch.
    """
    folder = Path(folder)
    config, meta = read_checkpoint_config(folder)
    run_config = folder.parent / "config.json"
    train: dict[str, Any] = {}
    if run_config.exists():
        try:
            train = json.loads(run_config.read_text()).get("train", {})
        except json.JSONDecodeError:
            train = {}
    backbone = config.backbone
    weights, weights_licence = BACKBONE_WEIGHTS.get(backbone.name, (None, None))
    pretraining = f": {BACKBONE_PRETRAINING[backbone.name]}" if backbone.name in BACKBONE_PRETRAINING else ""
    if backbone.pretrained and backbone.pretrained.startswith(f"./{BACKBONE_DIR}/"):
        weights = f"`{backbone.name}` weights shipped in this repo (`{backbone.pretrained[2:]}`){pretraining}"
        weights_licence = license.upper()
    elif backbone.pretrained is None:
        weights, weights_licence = f"`{backbone.name}` with RANDOM weights (rebuilt from `init_seed`)", "-"
    elif _is_local_weights(backbone.pretrained):
        weights = f"`{backbone.name}` weights from the file `{Path(backbone.pretrained).name}`{pretraining}"
        weights_licence = weights_licence or "see the source"
    elif weights is None:
        weights, weights_licence = f"`{backbone.name}`, pretrained={backbone.pretrained!r}", "see the source"
    trainable = trainable_params if trainable_params is not None else _num_trainable(folder)
    total = total_params if total_params is not None else _total_params(config)
    adapter, pre = config.adapter, config.preprocess
    return {
        "task": config.head.task, "task_name": TASK_NAMES[config.head.task], "num_classes": config.head.num_classes,
        "preset": config.name, "backbone": backbone.name, "weights": weights, "weights_licence": weights_licence,
        "adapters": (f"{adapter.method}, ratio {adapter.ratio}, stages T={adapter.temporal} S={adapter.spatial} "
                     f"G={adapter.global_}"),
        "trainable": trainable, "total": total, "data": data or train.get("data") or "not recorded",
        "inputs": (f"{pre.num_segments} x 1-s segments, {pre.image_size} px frames, "
                   f"{pre.target_frames}x{pre.num_mel_bins} fbank"),
        "val": {k: v for k, v in (meta.get("val") or {}).items() if k != "select"}, "epoch": meta.get("epoch"),
    }


def model_card(folder: str | Path, repo_id: str | None = None, *, data: str | None = None,
               metrics: dict[str, Any] | None = None, metrics_command: str | None = None,
               license: str = "mit", total_params: int | None = None) -> str:
    """The ``README.md`` text for the checkpoint in ``folder`` (YAML metadata + Markdown body).

    The facts come from :func:`checkpoint_facts` (the app's About panel shows the same ones).

    Args:
        folder: a checkpoint folder.
        repo_id: the Hub repo it will live in (used in the loading snippet and the metrics command).
        data: the training data (dataset folder / spec); default: the run's ``config.json`` beside the folder.
        metrics: measured metrics to report (e.g. ``eval --json`` on the test split); the validation metrics
            stored in the checkpoint are always listed too.
        metrics_command: the command that measured ``metrics``.
        license: licence id of the adapter weights (Hub metadata).
        total_params: all parameters; default: counted by building the model with random backbone weights.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    facts = checkpoint_facts(folder, data=data, total_params=total_params, license=license)
    task, source = facts["task"], repo_id or str(folder)
    trainable, total, val = facts["trainable"], facts["total"], facts["val"]
    metrics_command = metrics_command or (f"python -m stgcma eval --task {task} --checkpoint {source} "
                                          f"--data DATA --split test --json")
    card_data = ModelCardData(
        library_name="stgcma", license=license, tags=["audio-visual", "stg-cma", "adapter", task],
        metrics=[SELECT[task]], pipeline_tag=None, base_model=None,
    )
    lines = [
        f"# STG-CMA adapters: {TASK_NAMES[task]}",
        "",
        "Adapter-only checkpoint of STG-CMA (Wang, Tian, Hatzinakos, CVPR-W 2024, arXiv 2403.01862): one frozen",
        "image transformer shared by audio (log-mel fbank as an image) and video, adapted by small trainable",
        "temporal, spatial and global cross-modal adapters. Written by STG-CMA Studio.",
        "",
        "| | |",
        "|---|---|",
        f"| task | {facts['task_name']}, {facts['num_classes']} outputs |",
        f"| preset | `{facts['preset']}` |",
        f"| frozen backbone | {facts['weights']} (licence: {facts['weights_licence']}) |",
        f"| adapters | {facts['adapters']} |",
        f"| parameters | {trainable:,} trainable (in this repo)" + (f", {total:,} in all (frozen trunk counted once)"
                                                                     if total else "") + " |",
        f"| training data | `{facts['data']}` |",
        f"| inputs | {facts['inputs']} |",
        f"| licence | adapter weights: {license}; the backbone weights and the training data keep their own terms |",
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["Measured with:", "", f"    {metrics_command}", "", "| metric | value |", "|---|---|",
                  *_fmt_metrics(metrics), ""]
    if val:
        epoch = facts["epoch"]
        lines += [f"Validation at the selected checkpoint{f' (epoch {epoch})' if epoch else ''}:", "",
                  "| metric | value |", "|---|---|", *_fmt_metrics(val), ""]
    if not metrics:
        lines += ["Test metrics (not measured when this card was written):", "", f"    {metrics_command}", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from stgcma.inference import Predictor",
        f"predictor = Predictor.from_pretrained({source!r})",
        "analysis = predictor.analyze('clip.mp4')",
        "```",
        "",
        f"or `python -m stgcma analyze clip.mp4 --checkpoint {source} --out result/`.",
        "",
        f"Files: `{CONFIG_NAME}` (model config, preprocessing, class names and vocabularies, weights hash) and "
        f"`{WEIGHTS_NAME}` (the trained tensors only).",
    ]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    return str(ModelCard(content))


def _bundle_backbone(folder: Path, origin: Path) -> None:
    """Copy a local backbone weights file into ``folder/backbone/`` and point the config at it.

    ``origin``: the folder a relative ``backbone.pretrained`` path is relative to (the source checkpoint's).
    """
    document = json.loads((folder / CONFIG_NAME).read_text())
    pretrained = document["model"]["backbone"].get("pretrained")
    if not _is_local_weights(pretrained):
        return  # None, or a source tag such as "openai" that the loader fetches from its own source
    path = Path(pretrained).expanduser()
    path = path if path.is_absolute() else (origin / path).resolve()
    if not path.is_file():
        raise HubError(f"the checkpoint's backbone weights {path} are not a file: the shared repo would be "
                       "incomplete (give backbone.pretrained as a weights file)")
    target = folder / BACKBONE_DIR / path.name
    if path != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    document["model"]["backbone"]["pretrained"] = f"./{BACKBONE_DIR}/{path.name}"
    atomic_write_bytes(folder / CONFIG_NAME, json.dumps(document, indent=2).encode())


def save_pretrained(model_or_folder: Any, folder: str | Path, meta: dict[str, Any] | None = None,
                    repo_id: str | None = None, **card: Any) -> Path:
    """Write a shareable checkpoint folder: adapter weights + config (+ a local backbone file) + ``README.md``.

    Args:
        model_or_folder: an :class:`~stgcma.model.STGCMAModel`, or an existing checkpoint source (folder,
            run folder, ``default:TASK``) to copy.
        folder: where to write.
        meta: checkpoint metadata (class names, vocabularies...) when saving a model.
        repo_id: the Hub repo the card should name.
        **card: :func:`model_card` options (``data``, ``metrics``, ``metrics_command``, ``license``).
    """
    folder = Path(folder)
    if isinstance(model_or_folder, torch.nn.Module):
        save_checkpoint(model_or_folder, folder, meta)
        card.setdefault("total_params", model_or_folder.parameter_counts()["total"])
        origin = Path.cwd()
    else:
        source = resolve_source(model_or_folder)
        if source.resolve() != folder.resolve():
            folder.mkdir(parents=True, exist_ok=True)
            for name in checkpoint_files(source):
                if name != CARD_NAME:
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source / name, folder / name)
            if "data" not in card and (source.parent / "config.json").exists():
                card["data"] = json.loads((source.parent / "config.json").read_text()).get("train", {}).get("data")
        origin = source
    _bundle_backbone(folder, origin)
    atomic_write_bytes(folder / CARD_NAME, model_card(folder, repo_id, **card).encode())
    return folder


def push_to_hub(model_or_folder: Any, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str | None = None, meta: dict[str, Any] | None = None, api: Any = None,
                staging: str | Path | None = None, **card: Any) -> str:
    """Upload a checkpoint and its model card to the Hub repo ``repo_id`` (created when missing).

    Exactly :func:`checkpoint_files` of the staged folder are uploaded (``allow_patterns``).

    Args:
        model_or_folder: a model or a checkpoint source (see :func:`save_pretrained`).
        repo_id: ``owner/name``.
        private: create the repo private.
        token: Hub token (default: the logged-in one).
        commit_message: the commit's message.
        meta: checkpoint metadata when pushing a model.
        api: an ``huggingface_hub.HfApi`` (tests pass a mock).
        staging: folder to write the shareable checkpoint to (default: a temporary one).
        **card: :func:`model_card` options.

    Returns:
        The URL of the commit.

    Raises:
        HubError: offline (``HF_HUB_OFFLINE``), or the Hub refused the upload.
    """
    import tempfile

    if repo_id.count("/") != 1:
        raise HubError(f"repo id {repo_id!r} must look like owner/name")
    if api is None and hub_offline():
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it on a machine with internet "
                       "access, or write the folder with save_pretrained / `push --out DIR` and upload it later")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="stgcma-push-") as tmp:
        folder = save_pretrained(model_or_folder, staging or Path(tmp) / "checkpoint", meta, repo_id=repo_id, **card)
        files = checkpoint_files(folder)
        task = read_checkpoint_config(folder)[0].head.task
        from huggingface_hub.errors import HfHubHTTPError

        try:
            api.create_repo(repo_id, private=private, exist_ok=True, token=token)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=files,
                                     commit_message=commit_message or f"STG-CMA {task} adapters", token=token)
        except HfHubHTTPError as err:
            raise HubError(f"the Hub refused the upload to {repo_id}: {err}") from None
    return str(getattr(info, "commit_url", info))
