"""STG-CMA model invariants on toy backbones (ViT and Swin), for STG-CMA and the baselines."""

import pytest
import torch

from stgcma.adapters import Adapter, AdapterModule, BottleneckCrossAttention, TemporalBias, TemporalEmbedding
from stgcma.config import ConfigError
from stgcma.heads import TaskHead
from stgcma.model import create_model, mark_trainable, recomputed_blocks
from tests.conftest import random_inputs

TOYS = ["vit-test", "swin-test"]


def _trunk_tokens(model, video, audio):
    """Final-normed tokens of the bare frozen trunk for both streams: (B*T, N, D) each."""
    enc = model.encoder
    trunk = enc.trunk
    with torch.no_grad():
        tv = trunk(video.flatten(0, 1))
        if enc.is_vit:
            xa = trunk.ln_pre(trunk.embed(audio.flatten(0, 1), enc.audio_patch_embed, enc.audio_pos_embed))
            for block in trunk.blocks:
                xa = block(xa)
            ta = trunk.norm(xa)
        else:
            xa, grid = trunk.embed(audio.flatten(0, 1), enc.audio_patch_embed), trunk.grid
            for stage in trunk.stages:
                xa, grid = stage.merge(xa, grid)
                for block in stage.blocks:
                    xa = block(xa, grid)
            ta = trunk.norm(xa)
    return tv, ta


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("method", ["stgcma", "lavish", "linear_probe"])
def test_initial_features_equal_frozen_backbone(name, method):
    model = create_model(name, {"adapter.method": method})
    video, audio = random_inputs(model.config)
    model.train()  # DropPath active: still exact, the adapted branches are zero at step 0
    with torch.no_grad():
        feats = model.encoder(video, audio)
    tv, ta = _trunk_tokens(model, video, audio)
    torch.testing.assert_close(feats["video"], tv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats["audio"], ta, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TOYS)
def test_one_step_changes_only_trainable_parts(name):
    model = create_model(name)
    video, audio = random_inputs(model.config)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.randint(0, 29, (2, model.config.num_frames))
    for _ in range(2):  # two steps: zero-init up-projections only open the rest of the path after one
        logits = model(video, audio)["logits"]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    trunk_keys = [k for k in before if k.startswith("encoder.trunk.") or k.startswith("encoder.audio_patch_embed")]
    assert trunk_keys and all(torch.equal(before[k], after[k]) for k in trunk_keys)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable
    assert any(".temporal_v." in k for k in changed) and any("head." in k for k in changed)
    assert any("cross.gate" in k for k in changed)


@pytest.mark.parametrize("name", TOYS)
def test_trainable_set_is_structural(name):
    model = create_model(name)
    # A frozen module whose NAME looks like an adapter stays frozen; an Adapter under any name trains.
    model.encoder.trunk.adapter_lookalike = torch.nn.Linear(4, 4)
    model.encoder.some_name = Adapter(4, 2)
    mark_trainable(model)
    assert not model.encoder.trunk.adapter_lookalike.weight.requires_grad
    assert model.encoder.some_name.fc1.weight.requires_grad
    for mname, mod in model.named_modules():
        for p in mod.parameters(recurse=False):
            if p.requires_grad:
                chain = [m for n, m in model.named_modules() if mname.startswith(n)]
                assert any(isinstance(m, (AdapterModule, TaskHead)) for m in chain), mname


@pytest.mark.parametrize("name", TOYS)
def test_backbone_stays_in_eval_mode(name):
    model = create_model(name).train()
    assert not model.encoder.trunk.training
    assert all(not m.training for m in model.encoder.trunk.modules())
    assert model.encoder.blocks.training and model.head.training
    full = create_model(name, {"adapter.method": "full_finetune"}).train()
    assert full.encoder.trunk.training
    assert all(p.requires_grad for p in full.parameters())


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("stages", ["T", "S", "G", "TS", "TG", "SG", "TSG"])
def test_stage_switches_remove_their_adapters(name, stages):
    model = create_model(name, {"adapter.temporal": "T" in stages, "adapter.spatial": "S" in stages,
                                "adapter.global_": "G" in stages})
    blocks = model.encoder.blocks
    depth = len(blocks)
    temporal_blocks = sum(b.temporal_v is not None for b in blocks)
    even_blocks = sum((len(s.blocks) + 1) // 2 for s in model.encoder.trunk.stages)
    expected_temporal = depth if name == "vit-test" else even_blocks
    assert temporal_blocks == (expected_temporal if "T" in stages else 0)
    assert sum(b.spatial_v is not None for b in blocks) == (depth if "S" in stages else 0)
    assert sum(b.global_v is not None for b in blocks) == (depth if "G" in stages else 0)
    assert _count(model, Adapter) == 2 * (temporal_blocks + depth * (("S" in stages) + ("G" in stages)))
    assert _count(model, BottleneckCrossAttention) == (depth if ("S" in stages or "G" in stages) else 0)
    if name == "vit-test":
        assert _count(model, TemporalEmbedding) == (2 if "T" in stages else 0)
    else:
        assert _count(model, TemporalBias) == (2 * temporal_blocks)
    video, audio = random_inputs(model.config)
    assert model(video, audio)["logits"].shape == (2, model.config.num_frames, 29)


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("frames", [5, 10])
def test_shapes_for_5_and_10_segments(name, frames):
    model = create_model(name, {"preprocess.num_segments": frames})
    video, audio = random_inputs(model.config, batch=1)
    out = model(video, audio)["logits"]
    assert out.shape == (1, frames, 29)
    feats = model.encoder(video, audio)
    assert feats["video"].shape[0] == frames


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("method", ["stgcma", "lavish", "linear_probe", "full_finetune"])
def test_training_steps_stay_finite(name, method):
    model = create_model(name, {"adapter.method": method}).train()
    video, audio = random_inputs(model.config)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        loss = model(video, audio)["logits"].logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_method_trainable_counts_are_ordered():
    counts = {m: create_model("vit-test", {"adapter.method": m}).parameter_counts()
              for m in ["linear_probe", "stgcma", "lavish", "full_finetune"]}
    assert counts["linear_probe"]["trainable"] < counts["stgcma"]["trainable"]
    assert counts["full_finetune"]["trainable"] == counts["full_finetune"]["total"]
    assert len({c["total"] for m, c in counts.items() if m in ("linear_probe", "full_finetune")}) == 1


@pytest.mark.parametrize("name", TOYS)
def test_attention_capture_does_not_change_outputs(name):
    model = create_model(name).eval()
    for b in model.encoder.blocks:  # open the gates so the cross-attention matters
        b.cross.gate_v.data.fill_(0.5)
        b.cross.gate_a.data.fill_(0.5)
        b.spatial_v.fc2.weight.data.normal_(0, 0.1)
    video, audio = random_inputs(model.config)
    with torch.no_grad():
        plain = model(video, audio)["logits"]
        with model.capture_attention() as maps:
            captured = model(video, audio)["logits"]
    torch.testing.assert_close(plain, captured, atol=1e-5, rtol=1e-5)
    depth = len(model.encoder.blocks)
    assert len(maps) == depth * 4
    va = maps[(0, "global", "v<-a")]
    assert va.shape[0] == 2 * model.config.num_frames
    torch.testing.assert_close(va.sum(-1), torch.ones(va.shape[:-1]))
    assert all(b.cross.capture is None for b in model.encoder.blocks)


@pytest.mark.parametrize("bad_video, bad_audio, message", [
    ((2, 4, 3, 16, 16), (2, 4, 1, 32, 32), "video must be"),
    ((2, 4, 3, 32, 32), (2, 4, 1, 30, 32), "audio must be"),
    ((2, 4, 3, 32, 32), (2, 3, 1, 32, 32), "share"),
    ((2, 3, 3, 32, 32), (2, 3, 1, 32, 32), "T=4"),
])
def test_bad_inputs_say_what_was_expected(bad_video, bad_audio, message):
    model = create_model("vit-test")
    with pytest.raises(ValueError, match=message):
        model(torch.randn(bad_video), torch.randn(bad_audio))


def test_bad_configs_are_explained():
    with pytest.raises(ConfigError, match="image_size"):
        create_model("vit-test", {"preprocess.image_size": 64})
    with pytest.raises(ConfigError, match="stages"):
        create_model("swin-test", {"adapter.ratio": [0.1, 0.1, 0.1]})
    with pytest.raises(ConfigError, match="empty bottleneck"):
        create_model("vit-test", {"adapter.ratio": 0.001})


@pytest.mark.parametrize("shared_qkv", [False, True])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(shared_qkv, monkeypatch):
    from stgcma.backbones import SharedQKV

    if shared_qkv:  # the path of blocks 512 or more wide, whose autograd functions are recomputed too
        monkeypatch.setattr(SharedQKV, "min_width", 0)
    torch.manual_seed(0)
    model = create_model("vit-test").eval()  # no dropout, so both passes see the same function
    assert model.encoder.trunk.blocks[0].shares_qkv == shared_qkv
    video, audio = random_inputs(model.config)

    def grads(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        model.encoder.checkpointing = checkpointing
        loss = model(video, audio)["logits"].square().mean()
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    calls, block = [], model.encoder.blocks[0]
    forward = block.forward
    block.forward = lambda *args: calls.append(1) or forward(*args)  # counts recomputations too
    plain_loss, plain = grads(False)
    assert len(calls) == 1
    ckpt_loss, ckpt = grads(True)
    assert len(calls) == 3  # forward, then recomputed in the backward pass
    torch.testing.assert_close(ckpt_loss, plain_loss)
    assert plain.keys() == ckpt.keys() and plain
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], atol=1e-6, rtol=1e-5)


def test_partial_checkpointing_recomputes_only_its_blocks_with_the_same_gradients():
    torch.manual_seed(0)
    model = create_model("vit-test").eval()
    video, audio = random_inputs(model.config)
    depth = len(model.encoder.blocks)
    assert recomputed_blocks(depth, 1.0) == set(range(depth)) and not recomputed_blocks(depth, 0.0)
    assert recomputed_blocks(12, 0.75) == set(range(12)) - {0, 4, 8}
    calls = [0] * depth

    def counted(forward, index):
        def call(*args):
            calls[index] += 1
            return forward(*args)
        return call

    for i, block in enumerate(model.encoder.blocks):
        block.forward = counted(block.forward, i)

    def grads(fraction: float | None) -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.encoder.checkpointing = fraction is not None
        model.encoder.checkpoint_fraction = 1.0 if fraction is None else fraction
        model(video, audio)["logits"].square().mean().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain = grads(None)
    calls[:] = [0] * depth
    partial = grads(0.5)
    assert calls == [2 if i in recomputed_blocks(depth, 0.5) else 1 for i in range(depth)] and 2 in calls
    for k in plain:
        torch.testing.assert_close(partial[k], plain[k], atol=1e-6, rtol=1e-5)


def test_bench_train_reports_every_variant_and_the_ratios():
    from stgcma.benchmarks import TRAIN_VARIANTS, bench_train

    result = bench_train("vit-test", batch=1, steps=1, rounds=1)
    assert set(result["variants"]) == set(TRAIN_VARIANTS) | {"lavish_matched"}
    for row in result["variants"].values():
        assert row["step_seconds"] > 0 and row["trainable"] > 0
    rows = result["variants"]
    ratio = rows["stgcma_checkpointing"]["step_seconds"] / rows["stgcma"]["step_seconds"]
    assert result["checkpointing_time_ratio"] == ratio
    assert result["checkpointing_3_4_memory_ratio"] == (rows["stgcma_checkpointing_3_4"]["peak_bytes"]
                                                        / rows["stgcma"]["peak_bytes"])
    assert rows["linear_probe"]["trainable"] < rows["stgcma"]["trainable"] < rows["full_finetune"]["trainable"]
    # LAVISH at the preset's ratio trains fewer parameters; widened, as many as STG-CMA (within 5%)
    assert rows["lavish"]["trainable"] < rows["stgcma"]["trainable"]
    assert 1.0 <= rows["lavish_matched"]["trainable"] / rows["stgcma"]["trainable"] <= 1.05
    assert result["train_step_ratio_vs_lavish_matched"] == (rows["stgcma"]["step_seconds"]
                                                            / rows["lavish_matched"]["step_seconds"])


def test_bench_train_times_only_the_variants_asked_for():
    from stgcma.benchmarks import TRAIN_RATIOS, bench_train

    result = bench_train("vit-test", batch=1, steps=1, rounds=2, only=["lavish_matched", "stgcma"])
    assert list(result["variants"]) == ["stgcma", "lavish_matched"]
    assert all(len(row["round_seconds"]) == 2 for row in result["variants"].values())
    assert [k for k in TRAIN_RATIOS if k in result] == ["train_step_ratio_vs_lavish_matched"]
    with pytest.raises(ValueError, match="no training variant \\['stgcma_compiled'\\]"):
        bench_train("vit-test", only=["stgcma_compiled"])  # only with compile=True


def test_compiled_variants_compare_like_with_like():
    from stgcma.benchmarks import TRAIN_RATIOS, train_variant_names, train_variant_overrides

    names = train_variant_names(compile=True)
    assert names[-2:] == ["stgcma_compiled", "lavish_matched_compiled"]
    assert "lavish_matched_compiled" not in train_variant_names()
    overrides = train_variant_overrides("vit-test", names)
    assert overrides["lavish_matched_compiled"] == {**overrides["lavish_matched"], "compile": True}
    assert overrides["stgcma_compiled"] == {"compile": True}
    assert TRAIN_RATIOS["compiled_train_step_ratio_vs_lavish_matched"][:2] == ("stgcma_compiled",
                                                                              "lavish_matched_compiled")


def test_lavish_matched_to_stgcma_parameters_on_swin():
    """Swin has one ratio per stage: every stage is widened by the same factor."""
    from stgcma.benchmarks import _trainable_count, lavish_matched_overrides

    overrides = lavish_matched_overrides("swin-test")
    base = create_model("swin-test", {"backbone.pretrained": None}).config.adapter.ratio
    assert overrides["adapter.method"] == "lavish" and len(overrides["adapter.ratio"]) == len(base)
    factors = {round(r / b, 6) for r, b in zip(overrides["adapter.ratio"], base, strict=True)}
    assert len(factors) == 1 and factors.pop() > 1
    target = _trainable_count("swin-test", {})
    assert target <= _trainable_count("swin-test", overrides) <= 1.05 * target


def test_torch_compile_traces_the_shared_projection(monkeypatch):
    """``benchmarks/gpu.sh`` compiles CLIP models, whose blocks use the shared Q/K/V projection's
    autograd functions: compiled, the model must give the eager outputs and gradients."""
    from stgcma.backbones import SharedQKV

    monkeypatch.setattr(SharedQKV, "min_width", 0)  # vit-test's blocks are narrower than where it pays
    torch.manual_seed(0)
    model = create_model("vit-test", {"adapter.drop_path": 0.0, "head.dropout": 0.0})
    assert all(block.shares_qkv for block in model.encoder.trunk.blocks)
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)  # nonzero up-projections: the correction is not zero
    video, audio = random_inputs(model.config, batch=2)
    grads = []
    for forward in (torch.compile(model), model):
        model.zero_grad()
        logits = forward(video, audio)["logits"]
        logits.square().mean().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (compiled, compiled_grads), (eager, eager_grads) = grads
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)
