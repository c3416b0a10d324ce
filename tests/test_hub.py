"""Sharing checkpoints (stgcma.hub, ``push``): save_pretrained + model card, push_to_hub against a mocked
HfApi (autospecced from the real client), loading from a folder laid out like the Hugging Face cache, and
failing fast offline. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import save_file

from stgcma.checkpoint import CheckpointError, load_model
from stgcma.cli import main
from stgcma.hub import HubError, checkpoint_files, push_to_hub, save_pretrained
from stgcma.inference import Predictor
from stgcma.model import create_model
from tests.conftest import random_inputs

META = {"task": "ave", "class_names": [f"event {i}" for i in range(28)] + ["background"]}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def trained(tmp_path: Path):
    """A vit-test model whose frozen trunk comes from a local weights file, with non-zero adapters."""
    import timm

    trunk = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                              depth=2, num_heads=2)
    weights = tmp_path / "weights" / "vit-test.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, weights)
    model = create_model("vit-test", {"backbone.pretrained": str(weights)})
    with torch.no_grad():
        for value in model.trainable_state_dict().values():
            if value.is_floating_point():
                value.add_(0.05 * torch.randn_like(value))
    return model.eval()


def hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache does: blobs by hash, a snapshot of symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return repo


def test_save_pretrained_writes_checkpoint_backbone_and_card(trained, tmp_path: Path) -> None:
    folder = trained.save_pretrained(tmp_path / "share", META, repo_id="me/ave-vit", data="/data/AVE_Dataset",
                                     metrics={"accuracy": 0.5}, metrics_command="python -m stgcma eval ...")
    assert checkpoint_files(folder) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                        "backbone/vit-test.safetensors"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["model"]["backbone"]["pretrained"] == "./backbone/vit-test.safetensors"
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "stgcma" and card.data.license == "mit" and "ave" in card.data.tags
    counts = trained.parameter_counts()
    for text in (f"{counts['trainable']:,} trainable", f"{counts['total']:,} in all", "/data/AVE_Dataset",
                 "python -m stgcma eval ...", "| accuracy | 0.5000 |", "Predictor.from_pretrained('me/ave-vit')",
                 "`vit-test` weights shipped in this repo", "audio-visual event localisation"):
        assert text in card.text, text


def test_push_to_hub_uploads_exactly_the_checkpoint_and_card(trained, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    api = mock.create_autospec(HfApi, instance=True)  # calls are checked against the real client's signatures
    uploaded: dict[str, bytes] = {}

    def upload_folder(*, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        names = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        for name in filter_repo_objects(names, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns):
            uploaded[name] = (Path(folder_path) / name).read_bytes()
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}")

    api.upload_folder.side_effect = upload_folder
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / ".adapter_model.safetensors.tmp").write_bytes(b"partial")  # a leftover temporary file
    url = push_to_hub(trained, "me/ave-vit", meta=META, api=api, private=True, staging=staging)
    assert url.endswith(COMMIT)
    api.create_repo.assert_called_once_with("me/ave-vit", private=True, exist_ok=True, token=None)
    assert sorted(uploaded) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                "backbone/vit-test.safetensors"]
    assert uploaded["adapter_model.safetensors"] == (staging / "adapter_model.safetensors").read_bytes()
    assert b"library_name: stgcma" in uploaded["README.md"]


def test_offline_push_fails_fast_without_touching_the_client(trained, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with mock.patch("huggingface_hub.HfApi", side_effect=AssertionError("no client offline")):
        with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
            push_to_hub(trained, "me/ave-vit", meta=META)
        folder = trained.save_pretrained(tmp_path / "ckpt", META)
        assert main(["push", "--checkpoint", str(folder), "--repo-id", "me/ave-vit"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    with pytest.raises(HubError, match="owner/name"):
        push_to_hub(trained, "not-a-repo-id", meta=META, api=mock.Mock())


def test_from_pretrained_of_a_hub_cache_snapshot_round_trips(trained, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save_pretrained(trained, tmp_path / "share", META)
    cache = tmp_path / "hf-cache"
    hub_cache(cache, "me/ave-vit", folder)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, meta = load_model("me/ave-vit")
    assert Path(meta["source"]).parts[-2:] == ("snapshots", COMMIT)
    assert model.config.backbone.pretrained.endswith("snapshots/" + COMMIT + "/backbone/vit-test.safetensors")
    video, audio = random_inputs(trained.config, batch=1)
    with torch.no_grad():
        expected = trained(video, audio)["logits"]
        assert torch.allclose(model(video, audio)["logits"], expected, atol=1e-5)
        predictor = Predictor.from_pretrained("me/ave-vit")
        assert predictor.tasks == ["ave"] and predictor.meta["ave"]["class_names"] == META["class_names"]
        assert torch.allclose(predictor.models["ave"](video, audio)["logits"], expected, atol=1e-5)
    for key, value in trained.trainable_state_dict().items():
        assert torch.equal(model.trainable_state_dict()[key], value)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        load_model("me/never-downloaded")


@pytest.mark.slow
def test_push_out_makes_the_embedded_default_shareable(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["push", "--checkpoint", "default:ave", "--out", str(tmp_path / "ave")]) == 0
    assert "backbone/model.safetensors" in capsys.readouterr().out
    shared, _ = load_model(tmp_path / "ave")
    original, _ = load_model("default:ave")
    assert "assets" not in shared.config.backbone.pretrained  # its own copy of the frozen backbone
    video, audio = random_inputs(original.config, batch=1)
    with torch.no_grad():
        assert torch.allclose(shared(video, audio)["logits"], original(video, audio)["logits"], atol=1e-5)
    assert "synth-vit" in (tmp_path / "ave" / "README.md").read_text()
