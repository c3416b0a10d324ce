"""Backbones: trunks reproduce their source models, audio embeddings are derived, weights load locally."""

import time

import open_clip
import pytest
import timm
import torch

from stgcma.backbones import (
    LeanQuickGELU,
    PretrainedWeightsError,
    build_trunk,
    source_forward,
    source_model,
)
from stgcma.config import BackboneConfig, ConfigError


@pytest.mark.parametrize("name", ["vit-test", "clip-test", "swin-test"])
def test_trunk_matches_source_model(name):
    """Same tokens as the source library's forward, and the same input gradients (the trunk's own
    activation, LeanQuickGELU for CLIP, backpropagates like the source's)."""
    images = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    trunk = build_trunk(BackboneConfig(name=name))
    torch.manual_seed(1)
    source = source_model(BackboneConfig(name=name))
    with torch.no_grad():
        torch.testing.assert_close(trunk(images), source_forward(BackboneConfig(name=name), source, images),
                                   atol=1e-5, rtol=1e-5)
    grads = []
    for forward in (trunk, lambda x: source_forward(BackboneConfig(name=name), source, x)):
        x = images.clone().requires_grad_(True)
        (forward(x) ** 2).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("reference", [open_clip.transformer.QuickGELU(), timm.layers.QuickGELU()])
def test_lean_quick_gelu_matches_and_saves_one_tensor(reference):
    x = torch.randn(4, 7, 48, dtype=torch.float64)
    saved = {"lean": [], "reference": []}
    grads = {}
    for name, act in (("lean", LeanQuickGELU()), ("reference", reference)):
        xi = x.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t, n=name: saved[n].append(t) or t, lambda t: t):
            y = act(xi)
        y.backward(torch.cos(x))
        grads[name] = (y.detach(), xi.grad)
    torch.testing.assert_close(grads["lean"][0], grads["reference"][0], atol=0, rtol=0)
    torch.testing.assert_close(grads["lean"][1], grads["reference"][1], atol=1e-12, rtol=1e-12)
    assert len(saved["lean"]) == 1 and len({t.data_ptr() for t in saved["reference"]}) == 2


@pytest.mark.parametrize("name", ["vit-test", "clip-test", "swin-test"])
def test_the_inference_mlp_runs_in_row_pieces_with_the_same_values(name, monkeypatch):
    """Without gradients the frozen MLPs run a few tokens at a time (``by_rows``) and the QuickGELU
    gates in place: same tokens as one piece, and the input of the block is left as it was."""
    import stgcma.backbones as backbones

    torch.manual_seed(0)
    trunk = build_trunk(BackboneConfig(name=name))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        whole = trunk(images)
    calls = []
    real = backbones.by_rows
    monkeypatch.setattr(backbones, "MLP_ROWS", 5)
    monkeypatch.setattr(backbones, "by_rows", lambda fn, x: calls.append(x.shape) or real(fn, x))
    with torch.no_grad():
        pieces = trunk(images)
    assert calls and all(shape[:-1].numel() > 5 for shape in calls)
    torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=1e-6)
    x = torch.randn(2, 9, 16)
    kept = x.clone()
    with torch.no_grad():
        out = real(lambda rows: rows * 2, x)
    assert out.shape == x.shape and torch.equal(out, kept * 2) and torch.equal(x, kept)
    strided = torch.randn(48, 7).T  # not contiguous: gated out of place, same values
    with torch.no_grad():
        torch.testing.assert_close(LeanQuickGELU()(strided), strided * torch.sigmoid(1.702 * strided))


def test_clip_trunk_uses_the_lean_activation():
    trunk = build_trunk(BackboneConfig(name="clip-test"))
    acts = [m for m in trunk.modules() if type(m).__name__.endswith("QuickGELU")]
    assert acts and all(isinstance(m, LeanQuickGELU) for m in acts)


@pytest.mark.parametrize("name", ["vit-test", "clip-test", "swin-test"])
def test_trunk_is_frozen_and_in_eval(name):
    trunk = build_trunk(BackboneConfig(name=name))
    assert not trunk.training
    assert all(not p.requires_grad for p in trunk.parameters())


def test_vit_audio_embedding_is_rgb_sum_and_resampled_grid():
    trunk = build_trunk(BackboneConfig(name="vit-test"))
    conv, pos = trunk.audio_embedding((48, 24))
    torch.testing.assert_close(conv.weight, trunk.patch_embed.weight.sum(1, keepdim=True))
    assert pos.shape == (1 + 6 * 3, trunk.embed_dim)
    torch.testing.assert_close(pos[0], trunk.pos_embed.reshape(-1, trunk.embed_dim)[0])


def test_swin_audio_embedding_is_rgb_mean_and_must_be_square():
    trunk = build_trunk(BackboneConfig(name="swin-test"))
    conv, pos = trunk.audio_embedding((32, 32))
    assert pos is None
    torch.testing.assert_close(conv.weight, trunk.patch_proj.weight.mean(1, keepdim=True))
    with pytest.raises(ConfigError, match="square"):
        trunk.audio_embedding((32, 16))


def test_heads_override_changes_attention_and_is_checked():
    images = torch.randn(1, 3, 32, 32)
    torch.manual_seed(2)
    base = build_trunk(BackboneConfig(name="vit-test"))
    torch.manual_seed(2)
    quirk = build_trunk(BackboneConfig(name="vit-test", frozen_attn_heads=1))
    assert quirk.blocks[0].num_heads == 1
    with torch.no_grad():
        assert not torch.allclose(base(images), quirk(images))
    with pytest.raises(ConfigError, match="divide"):
        build_trunk(BackboneConfig(name="vit-test", frozen_attn_heads=3))


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="clip-vit-b16"):
        build_trunk(BackboneConfig(name="resnet-50"))


def test_timm_weights_load_from_a_local_file(tmp_path):
    source = timm.create_model("swin_tiny_patch4_window7_224", img_size=32, embed_dim=16, depths=(2, 2),
                               num_heads=(1, 2), window_size=4)
    path = tmp_path / "swin.pth"
    torch.save(source.state_dict(), path)
    trunk = build_trunk(BackboneConfig(name="swin-test", pretrained=str(path)))
    torch.testing.assert_close(trunk.patch_proj.weight, source.patch_embed.proj.weight)
    torch.testing.assert_close(trunk.blocks[1].attn.qkv.weight, source.layers[0].blocks[1].attn.qkv.weight)


def test_open_clip_weights_load_from_a_local_folder(tmp_path):
    from open_clip import model as oc_model

    from stgcma.backbones import _TINY_CLIP

    clip = oc_model.CLIP(_TINY_CLIP["embed_dim"], _TINY_CLIP["vision_cfg"], _TINY_CLIP["text_cfg"])
    torch.save(clip.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    trunk = build_trunk(BackboneConfig(name="clip-test", pretrained=str(tmp_path)))
    torch.testing.assert_close(trunk.patch_embed.weight, clip.visual.conv1.weight)
    source_block = clip.visual.transformer.resblocks[1]
    torch.testing.assert_close(trunk.blocks[1].attn.qkv.weight, source_block.attn.in_proj_weight)
    assert open_clip.__version__


def test_missing_local_weights_are_named(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        build_trunk(BackboneConfig(name="swin-test", pretrained=str(tmp_path / "nope.pth")))
    with pytest.raises(PretrainedWeightsError, match="no weights file"):
        build_trunk(BackboneConfig(name="clip-test", pretrained=str(tmp_path)))


@pytest.mark.parametrize("name, tag", [("clip-vit-b16", "openai"), ("swin-b", "in22k")])
def test_offline_pretrained_fails_fast_with_instructions(monkeypatch, name, tag):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError, match="backbone.pretrained=/path/to/weights"):
        build_trunk(BackboneConfig(name=name, pretrained=tag))
    assert time.monotonic() - start < 10


def test_unknown_pretrained_tag():
    with pytest.raises(ConfigError, match="openai"):
        build_trunk(BackboneConfig(name="clip-vit-b16", pretrained="laion9b"))
