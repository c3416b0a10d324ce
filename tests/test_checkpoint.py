"""Adapter-only checkpoints: save -> load reproduces outputs; bad or mismatched files are refused."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from stgcma.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_model,
    load_weights_into,
    save_checkpoint,
)
from stgcma.model import create_model
from tests.conftest import random_inputs


def _trained(name="vit-test"):
    model = create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("name", ["vit-test", "swin-test"])
def test_save_load_reproduces_outputs(tmp_path, name):
    torch.manual_seed(3)
    model = _trained(name)
    save_checkpoint(model, tmp_path / "ckpt", {"class_names": ["a"], "init_seed": 3})
    video, audio = random_inputs(model.config)
    torch.manual_seed(99)  # the frozen random trunk is rebuilt from init_seed, whatever the global RNG
    loaded, meta = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, audio)["logits"], model(video, audio)["logits"])
    assert meta["class_names"] == ["a"]


def test_checkpoint_holds_only_trainable_tensors(tmp_path):
    model = _trained()
    save_checkpoint(model, tmp_path)
    keys = set(load_file(str(tmp_path / WEIGHTS_NAME)))
    assert keys == set(model.trainable_state_dict())
    assert {k for k, p in model.named_parameters() if p.requires_grad} <= keys
    assert not any(k.startswith("encoder.trunk.") for k in keys)
    assert not list(tmp_path.glob(".*.tmp"))


def test_modified_weights_are_detected(tmp_path):
    save_checkpoint(_trained(), tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_model(tmp_path)


def test_config_mismatch_is_refused(tmp_path):
    save_checkpoint(_trained(), tmp_path)
    other = create_model("vit-test", {"adapter.ratio": 0.5})
    with pytest.raises(CheckpointError, match="shape"):
        load_weights_into(other, tmp_path)
    fewer = create_model("vit-test", {"adapter.temporal": False})
    with pytest.raises(CheckpointError, match="does not"):
        load_weights_into(fewer, tmp_path)
    more = create_model("vit-test", {"adapter.method": "lavish"})
    with pytest.raises(CheckpointError):
        load_weights_into(more, tmp_path)


def test_wrong_task_and_missing_files(tmp_path):
    save_checkpoint(_trained(), tmp_path / "c")
    with pytest.raises(CheckpointError, match="'ave' checkpoint"):
        load_model(tmp_path / "c", task="avs")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_model(tmp_path)
    (tmp_path / "c" / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path / "c")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent")


def test_hub_repo_id_is_read_from_the_local_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(4)
    model = _trained()
    snapshot = tmp_path / "hub" / "models--someone--stgcma-test" / "snapshots" / ("a" * 40)
    save_checkpoint(model, snapshot)
    (tmp_path / "hub" / "models--someone--stgcma-test" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--stgcma-test" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    torch.manual_seed(4)
    loaded, meta = load_model("someone/stgcma-test")
    assert meta["source"] == str(snapshot)
    video, audio = random_inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, audio)["logits"], model(video, audio)["logits"])
    with pytest.raises(CheckpointError, match="offline"):
        load_model("someone/not-cached")


def test_config_file_records_everything_to_rebuild(tmp_path):
    save_checkpoint(_trained(), tmp_path, {"epoch": 3})
    doc = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert doc["format"] == "stgcma-adapter" and doc["model"]["backbone"]["name"] == "vit-test"
    assert doc["model"]["preprocess"]["num_mel_bins"] == 32 and doc["meta"]["epoch"] == 3


def test_head_batchnorm_statistics_round_trip(tmp_path):
    """The AVS head has BatchNorm: its running statistics are trained state and must be saved."""
    torch.manual_seed(5)
    model = create_model("vit-test", {"head.task": "avs", "head.avs_channels": 16})
    video, audio = random_inputs(model.config)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(video * 3 + 1, audio)  # moves the running statistics away from their initial values
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(0.5)
    model.eval()
    save_checkpoint(model, tmp_path, {"init_seed": 5})
    assert any(k.endswith("running_mean") for k in load_file(str(tmp_path / WEIGHTS_NAME)))
    loaded, _ = load_model(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, audio)["logits"], model(video, audio)["logits"])
