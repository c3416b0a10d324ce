"""Adapter-only checkpoints: ``adapter_model.safetensors`` + ``adapter_config.json`` (peft-style).

A checkpoint folder holds ONLY the trained tensors (adapters, temporal tables, stream norms, head)
and a JSON document with everything needed to rebuild the model: the full ``ModelConfig``
(backbone name and weights source, adapter settings, head, preprocessing) plus task metadata
(class names, answer and question vocabularies) and the SHA-256 of the weights file.

Writes are atomic (both files written in full to temporary names, then ``os.replace``, weights
before config), so a full disk or a crash never leaves a half-written checkpoint; loading verifies
the hash, the config, and that the only keys missing from the file are the frozen backbone's, and
every tensor's shape, dtype and finiteness before it copies any: a damaged checkpoint is refused
with one ``CheckpointError`` line, never half-loaded.

Sources for ``load_model``: a local folder, ``"default"`` (the embedded default in ``assets/``,
one folder per task) or a Hugging Face Hub repo id (through ``huggingface_hub``, which honours its
cache and ``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stgcma.config import ConfigError, ModelConfig

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "stgcma-adapter"
FORMAT_VERSION = 1
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_DIR = ASSETS_DIR / "default"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found, read or applied; the message names the file and the problem."""


def _umask_mode() -> int:
    """Permissions a plain ``open()`` would give a new file (mkstemp's 0600 is for the temporary name only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_file(folder: Path, name: str, write: Callable[[str], None]) -> str:
    """A fully written, fsynced temporary file next to ``folder / name``; removed again if writing fails."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_temp_file(path.parent, path.name, lambda tmp: Path(tmp).write_bytes(data)), path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_temp_file(path.parent, path.name, lambda tmp: torch.save(obj, tmp)), path)


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1-MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(model: torch.nn.Module, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save the trainable tensors of ``model`` and its config (+ ``meta``) to ``folder``.

    Both files are written in full to temporary names before either replaces its old version, so a
    failed write (a full disk) leaves the previous checkpoint as it was; only a crash between the two
    renames can pair new weights with the old config, and the hash check refuses that pair.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.trainable_state_dict().items()}
    weights_tmp = _temp_file(folder, WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    try:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "weights_sha256": file_sha256(Path(weights_tmp)),
            "meta": meta or {},
        }
        text = json.dumps(document, indent=2).encode()
        config_tmp = _temp_file(folder, CONFIG_NAME, lambda tmp: Path(tmp).write_bytes(text))
    except BaseException:
        Path(weights_tmp).unlink(missing_ok=True)
        raise
    os.replace(weights_tmp, folder / WEIGHTS_NAME)
    os.replace(config_tmp, folder / CONFIG_NAME)
    return folder


def read_checkpoint_config(folder: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Read and validate ``adapter_config.json``: returns (model config, meta)."""
    path = Path(folder) / CONFIG_NAME
    if not path.exists():
        raise CheckpointError(f"{path} not found: a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror or err})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(f"{path} is not an STG-CMA adapter checkpoint (format {found!r})")
    try:
        config = ModelConfig.from_dict(document["model"])
    except (ConfigError, KeyError) as err:
        raise CheckpointError(f"{path}: invalid model config ({err})") from None
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: 'meta' must be an object, got {type(meta).__name__}")
    digest = document.get("weights_sha256")
    if digest is not None and not isinstance(digest, str):
        raise CheckpointError(f"{path}: 'weights_sha256' must be a hex string, got {digest!r}")
    meta = dict(meta)
    meta["weights_sha256"] = digest
    return config, meta


def _resolve_backbone_path(config: ModelConfig, folder: Path) -> ModelConfig:
    """A relative ``backbone.pretrained`` path in a checkpoint is relative to the checkpoint folder."""
    pretrained = config.backbone.pretrained
    if pretrained and pretrained.startswith("./") or (pretrained and pretrained.startswith("../")):
        # abspath, not resolve(): a Hub cache snapshot holds symlinks to suffix-less blobs, and the loaders
        # pick the weights format by the file name
        config.backbone.pretrained = os.path.abspath(folder / pretrained)
    return config


def load_weights_into(model: torch.nn.Module, folder: str | Path, expected_sha256: str | None = None,
                      fresh_prefix: str | None = None) -> list[str]:
    """Load adapter tensors into ``model``; the only keys the file may lack are frozen backbone keys, and
    keys under ``fresh_prefix`` (modules an override added, which keep their initialisation). Returns those.
    Under ``fresh_prefix`` the file may also hold keys the model lacks (modules an override replaced, such
    as another head type): they are not loaded."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        if expected_sha256 and file_sha256(path) != expected_sha256:
            raise CheckpointError(f"{path} does not match the hash in {CONFIG_NAME}: the checkpoint is incomplete "
                                  "or was modified; save it again")
        tensors = load_file(str(path))
    except SafetensorError as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); "
                              "it is damaged or cut short") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror or err})") from None
    targets = model.trainable_state_dict()
    if fresh_prefix:  # tensors of modules an override replaced
        tensors = {k: v for k, v in tensors.items() if k in targets or not k.startswith(fresh_prefix)}
    unexpected = sorted(set(tensors) - set(targets))
    if unexpected:
        raise CheckpointError(f"{path} has tensors this model does not: {unexpected[:5]} "
                              "(was it saved from a different config?)")
    fresh = [k for k in targets if k not in tensors and fresh_prefix and k.startswith(fresh_prefix)]
    missing = [k for k in targets if k not in tensors and k not in fresh]
    if missing:
        raise CheckpointError(f"{path} lacks trained tensors {missing[:5]}: config and weights do not match")
    for key, value in tensors.items():  # every tensor is checked before any is copied: never half-loaded
        if targets[key].shape != value.shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(targets[key].shape)} (config mismatch)")
        if targets[key].dtype != value.dtype:
            raise CheckpointError(f"{path}: {key} is {value.dtype}, the model expects {targets[key].dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values; the checkpoint is damaged")
    with torch.no_grad():
        for key, value in tensors.items():
            targets[key].copy_(value)
    return fresh


def resolve_source(source: str | Path, task: str | None = None) -> Path:
    """A local checkpoint folder for ``source``: a checkpoint or finished run folder, ``default`` (+ task),
    or a Hub repo id."""
    text = str(source)
    if text == "default" or text.startswith("default:"):
        task = text.split(":", 1)[1] if ":" in text else task
        if task is None:
            raise CheckpointError("the embedded default has one checkpoint per task: pass a task (ave, avs, avqa)")
        folder = DEFAULT_DIR / task
        if not (folder / CONFIG_NAME).exists():
            raise CheckpointError(f"the embedded default for task {task!r} is not in {folder}; "
                                  "rebuild it with `python -m stgcma build-default`")
        return folder
    path = Path(text).expanduser()
    if path.exists():
        if (path / CONFIG_NAME).exists():
            return path
        if (path / "summary.json").exists():  # a finished training run: its selected checkpoint
            selected = json.loads((path / "summary.json").read_text()).get("selected", "best")
            if (path / selected / CONFIG_NAME).exists():
                return path / selected
        if task and (path / task / CONFIG_NAME).exists():
            return path / task
        raise CheckpointError(f"{path} is not a checkpoint folder (no {CONFIG_NAME})")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return _from_hub(text, task)
    raise CheckpointError(f"checkpoint {text!r} not found: give a folder, 'default', or a Hub repo id (owner/name)")


def _from_hub(repo_id: str, task: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        root = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"]))
    except LocalEntryNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id} is not in the local Hugging Face cache and the Hub cannot be "
                              "reached (offline); download it once online or pass a local folder") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot fetch Hub repo {repo_id}: {err}") from None
    if (root / CONFIG_NAME).exists():
        return root
    if task and (root / task / CONFIG_NAME).exists():
        return root / task
    raise CheckpointError(f"Hub repo {repo_id} has no {CONFIG_NAME}" + (f" (nor {task}/{CONFIG_NAME})" if task else ""))


def load_model(source: str | Path, task: str | None = None, device: str | torch.device = "cpu",
               overrides: list[str] | dict[str, Any] | None = None, fresh_prefix: str | None = None):
    """Rebuild a trained model from a checkpoint source; returns (model in eval mode, meta).

    ``fresh_prefix`` (e.g. ``"head."``): trainable tensors under it that the checkpoint lacks (modules added
    by ``overrides``) keep their initialisation instead of failing the load; ``meta["fresh"]`` lists them."""
    from stgcma.config import apply_overrides
    from stgcma.model import STGCMAModel

    folder = resolve_source(source, task)
    config, meta = read_checkpoint_config(folder)
    if task and config.head.task != task:
        raise CheckpointError(f"{folder} is a {config.head.task!r} checkpoint, not {task!r}")
    config = _resolve_backbone_path(config, folder)
    if overrides:
        config = apply_overrides(config, overrides)
    with torch.random.fork_rng(devices=[]):
        try:
            if config.backbone.pretrained is None and meta.get("init_seed") is not None:
                torch.manual_seed(int(meta["init_seed"]))  # a randomly initialised trunk is rebuilt from its seed
            model = STGCMAModel(config)
        except CheckpointError:
            raise
        except (ConfigError, ValueError, TypeError, RuntimeError) as err:
            line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"{folder / CONFIG_NAME} describes a model that cannot be built: {line}") from err
    fresh = load_weights_into(model, folder, meta.get("weights_sha256"), fresh_prefix)
    if fresh:
        meta["fresh"] = fresh
    meta["source"] = str(folder)
    return model.to(device).eval(), meta
