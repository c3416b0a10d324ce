"""The shared STG-CMA block pieces: reshapes, cross-attention maths, the folded temporal projection, and
the whole block against the method written out with the plain frozen sub-layers."""

import pytest
import torch

from stgcma.adapters import Adapter, BottleneckCrossAttention, LavishAdapter, TemporalBias, drop_path
from stgcma.backbones import QKVHandle, SharedQKV, build_trunk
from stgcma.blocks import STGCMABlock, StreamContext, from_time, to_time
from stgcma.config import BackboneConfig


def test_time_reshapes_round_trip():
    x = torch.randn(3 * 4, 7, 5)  # (B*T, N, D)
    t = to_time(x, frames=4)
    assert t.shape == (3 * 7, 4, 5)
    torch.testing.assert_close(t.reshape(3, 7, 4, 5)[1, 2, 3], x.reshape(3, 4, 7, 5)[1, 3, 2])
    torch.testing.assert_close(from_time(t, batch=3), x)


def test_cross_attention_matches_the_formula():
    cross = BottleneckCrossAttention()
    cross.gate_v.data.fill_(0.7)
    cross.gate_a.data.fill_(-0.3)
    hv, ha = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    nv, na = cross(hv, ha)
    expect_v = hv + 0.7 * torch.softmax(hv @ ha.transpose(1, 2), -1) @ ha  # no scale, no projections
    expect_a = ha - 0.3 * torch.softmax(ha @ hv.transpose(1, 2), -1) @ hv
    torch.testing.assert_close(nv, expect_v)
    torch.testing.assert_close(na, expect_a)
    assert sum(p.numel() for p in cross.parameters()) == 2


def test_zero_gates_and_zero_up_projection_are_identity():
    cross = BottleneckCrossAttention()
    hv, ha = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    nv, na = cross(hv, ha)
    assert torch.equal(nv, hv) and torch.equal(na, ha)
    assert torch.count_nonzero(Adapter(8, 2)(torch.randn(3, 8))) == 0
    assert torch.count_nonzero(LavishAdapter(8, 2, 2)(torch.randn(2, 3, 8), torch.randn(2, 4, 8))) == 0


@pytest.mark.parametrize("name", ["vit-test", "clip-test", "swin-test"])
def test_folded_temporal_projection_is_exact(name):
    trunk = build_trunk(BackboneConfig(name=name))
    frozen = trunk.blocks[0]
    dim = frozen.ln1.weight.numel()
    adapter = Adapter(dim, 4)
    adapter.fc2.weight.data.normal_(0, 0.1)
    if name == "vit-test":
        frozen.ls1 = _Scale(dim)  # exercise the layer-scale fold too
    x = torch.randn(6, 4, dim)  # (B*N, T, D)
    with torch.no_grad():
        plain = adapter(frozen.attend_time(x))
        fused = adapter.up(adapter.down_after(frozen.attend_time(x, project=False), *frozen.output_projection()))
    torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-5)


class _Scale(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        return x * self.gamma


def test_temporal_bias_is_relative():
    bias = TemporalBias(num_frames=4, num_heads=2)
    b = bias()
    assert b.shape == (2, 4, 4) and bias.table.shape == (7, 2)
    torch.testing.assert_close(b[:, 0, 1], b[:, 2, 3])  # same offset, same bias
    torch.testing.assert_close(b[:, 0, 3], bias.table[0])  # offset i - j = -3 -> row 0
    torch.testing.assert_close(b[:, 3, 0], bias.table[6])


def _method_block(block, frozen, xv, xa, ctx):
    """METHOD.md's block, step by step, with each frozen sub-layer run on its own input."""
    streams = []
    for x, temporal, bias in ((xv, block.temporal_v, block.bias_v), (xa, block.temporal_a, block.bias_a)):
        out = frozen.attend_time(to_time(x, ctx.frames), None if bias is None else bias())  # (B*N, T, D)
        update = from_time(temporal(out), ctx.batch)  # (B*T, N, D)
        update = drop_path(update.reshape(ctx.batch, -1, x.shape[-1]), block.drop_path_rate, block.training)
        streams.append(x + update.reshape(x.shape))
    xv, xa = streams
    sv, sa = frozen.attend(xv, ctx.grid_v), frozen.attend(xa, ctx.grid_a)
    hv, ha = block.spatial_v.down(sv), block.spatial_a.down(sa)
    gv, ga = block.cross(frozen.group(hv, ctx.grid_v), frozen.group(ha, ctx.grid_a), "spatial")
    xv = xv + sv + block.spatial_v.up(frozen.ungroup(gv, ctx.grid_v))
    xa = xa + sa + block.spatial_a.up(frozen.ungroup(ga, ctx.grid_a))
    mv, ma = frozen.feed_forward(xv), frozen.feed_forward(xa)
    gv, ga = block.cross(block.global_v.down(mv), block.global_a.down(ma), "global")
    return xv + mv + block.global_v.up(gv), xa + ma + block.global_a.up(ga)


@pytest.mark.parametrize("shared", [True, False], ids=["one-qkv", "two-qkv"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ["vit-test", "clip-test", "swin-test"])
def test_block_equals_the_method_written_out(name, training, shared, monkeypatch):
    """The block's values and gradients are the method's (values also without gradients), with one Q/K/V
    projection per stream (``qkv_after_update``) and with the plain path a block takes when it is narrower than
    ``SharedQKV.min_width`` or LN1 is not a LayerNorm."""
    torch.manual_seed(0)
    trunk = build_trunk(BackboneConfig(name=name))
    frozen = trunk.blocks[0]
    monkeypatch.setattr(SharedQKV, "min_width", 0)  # the test backbones are narrower than where it pays
    assert frozen.shares_qkv
    if not shared:
        monkeypatch.setattr(type(frozen), "shares_qkv", False)
    dim, frames, batch = frozen.ln1.weight.numel(), 3, 2
    frozen.ln1.weight.data.uniform_(0.5, 1.5)  # a LayerNorm that is not the identity
    frozen.ln1.bias.data.normal_(0, 0.1)
    swin = name == "swin-test"
    grid_v = grid_a = trunk.grid if swin else (1, 1)
    tokens_v, tokens_a = (grid_v[0] * grid_v[1],) * 2 if swin else (5, 4)
    block = STGCMABlock(dim, 4, frozen.num_heads, frames, temporal_bias=swin, drop_path_rate=0.5)
    for p in block.parameters():
        p.data.normal_(0, 0.2)  # nonzero up-projections, gates and temporal bias
    block.train(training)
    xv = torch.randn(batch * frames, tokens_v, dim, requires_grad=True)
    xa = torch.randn(batch * frames, tokens_a, dim, requires_grad=True)
    ctx = StreamContext(batch, frames, grid_v, grid_a)
    results = []
    for forward in (block.forward, lambda *a: _method_block(block, *a)):
        torch.manual_seed(1)  # the same stochastic-depth draws, in the same order
        out = forward(frozen, xv, xa, ctx)
        loss = sum((o * torch.randn_like(o)).sum() for o in out)
        results.append((out, torch.autograd.grad(loss, [xv, xa, *block.parameters()])))
    (ours, our_grads), (method, method_grads) = results
    torch.manual_seed(1)
    with torch.no_grad():  # inference overwrites qkv(x) with qkv(y) in place
        inference = block.forward(frozen, xv, xa, ctx)
    for a, b, c in zip(ours, method, inference, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(c, b, atol=2e-5, rtol=1e-4)
    for a, b in zip(our_grads, method_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=1e-4)


def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of ``fn()``."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("name", ["clip-test", "swin-test"])
def test_one_qkv_keeps_less_for_backward_than_two(name, monkeypatch):
    """The shared projection keeps less for backward than the plain path. Per stream, a ViT block keeps
    no qkv(x) (the correction's backward pass rebuilds it from qkv(y), which the spatial attention
    keeps anyway), no y (rebuilt from x and the adapter's hidden units) and no copy of the attention
    output for the spatial adapter (it folds the output projection): 5/3 of a (tokens, 3D)
    projection. Swin's spatial attention keeps its own windowed copy of qkv(y) and the adapter an
    ungrouped copy of the heads: about one projection less."""
    trunk = build_trunk(BackboneConfig(name=name)).requires_grad_(False)  # frozen, as in a model
    frozen = trunk.blocks[0]
    dim, frames = frozen.ln1.weight.numel(), 4
    swin = name == "swin-test"
    grid = trunk.grid if swin else (1, 1)
    tokens = grid[0] * grid[1] if swin else 17
    block = STGCMABlock(dim, 4, frozen.num_heads, frames, temporal_bias=swin).train()
    xv = torch.randn(2 * frames, tokens, dim, requires_grad=True)
    xa = torch.randn(2 * frames, tokens, dim, requires_grad=True)
    ctx = StreamContext(2, frames, grid, grid)
    monkeypatch.setattr(SharedQKV, "min_width", 0)
    assert frozen.shares_qkv
    shared = _saved_bytes(lambda: block(frozen, xv, xa, ctx))
    monkeypatch.setattr(type(frozen), "shares_qkv", False)
    plain = _saved_bytes(lambda: block(frozen, xv, xa, ctx))
    qkv_bytes = (xv.numel() + xa.numel()) * 3 * xv.element_size()
    # Per-token scalars (the sigmas, their ratio, the (h+2)-wide correction input) are 1/D of a
    # token's D-wide tensors: 12% of a projection at this test's D=32, 3% at CLIP-B/16's.
    assert plain - shared >= (0.75 if swin else 1.4) * qkv_bytes, (shared, plain, qkv_bytes)


def test_the_shared_projection_is_used_where_it_pays():
    clip = build_trunk(BackboneConfig(name="clip-vit-b16"))  # random weights: no download
    assert all(block.shares_qkv for block in clip.blocks)
    assert not any(block.shares_qkv for block in build_trunk(BackboneConfig(name="synth-vit")).blocks)


def test_time_attention_without_its_rebuilt_qkv_says_why():
    """A gradient that reaches the temporal attention but not the spatial stage's projection of the
    same block cannot rebuild q, k, v: a clear error, not a wrong gradient."""
    frozen = build_trunk(BackboneConfig(name="clip-test")).requires_grad_(False).blocks[0]
    x = torch.randn(6, 5, frozen.ln1.weight.numel(), requires_grad=True)
    out = frozen.attend_time_projected(frozen.project_qkv(x), 3, None, QKVHandle())
    with pytest.raises(RuntimeError, match="rebuilt"):
        out.sum().backward()


def test_rebuilt_qkv_is_not_held_when_the_time_attention_needs_no_gradient():
    """In a first block whose input needs no gradient (no temporal bias), nothing takes the rebuilt
    qkv(x): the handle must not hold it for the rest of the backward pass."""
    frozen = build_trunk(BackboneConfig(name="clip-test")).requires_grad_(False).blocks[0]
    dim, frames = frozen.ln1.weight.numel(), 3
    adapter = Adapter(dim, 4)
    adapter.fc2.weight.data.normal_(0, 0.2)
    x = torch.randn(2 * frames, 5, dim)  # no gradient wanted
    qkv = frozen.project_qkv(x)
    handle = QKVHandle()
    out = frozen.attend_time_projected(qkv, frames, None, handle)  # (B*N, T, D)
    hidden = from_time(adapter.down_after(out, *frozen.output_projection()), 2)
    y = x + adapter.up(hidden)
    frozen.qkv_after_update(qkv, x, y, hidden, adapter.fc2, None, handle).square().sum().backward()
    assert adapter.fc1.weight.grad is not None and handle.qkv is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_time_attention_is_the_softmax_attention_along_time(dtype):
    """The attention along time (its own forward and backward passes, with a relative bias) gives SDPA's
    values and gradients over the time-major q, k, v; bf16 input comes back as bf16, computed in float32."""
    torch.manual_seed(0)
    batch, frames, tokens, heads, d = 2, 5, 3, 4, 8
    qkv = torch.randn(batch * frames, tokens, 3 * heads * d, dtype=torch.float64)
    bias = torch.randn(heads, frames, frames, dtype=torch.float64)
    frozen = build_trunk(BackboneConfig(name="clip-test")).blocks[0]
    frozen.attn.num_heads = heads
    grads = {}
    for name in ("ours", "sdpa"):
        x = qkv.to(dtype if name == "ours" else torch.float64, copy=True).requires_grad_(True)
        b = bias.clone().requires_grad_(True)
        if name == "ours":
            out = frozen.attn.attend_qkv_time(x, frames, b)
        else:
            q, k, v = x.reshape(batch, frames, tokens, 3, heads, d).permute(3, 0, 2, 4, 1, 5)  # (B, N, heads, T, d)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=b)
            out = out.transpose(2, 3).reshape(batch * tokens, frames, heads * d)  # (B*N, T, D)
        assert out.dtype == x.dtype and out.shape == (batch * tokens, frames, heads * d)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float64)).reshape(out.shape).to(out.dtype))
        assert x.grad.dtype == x.dtype
        grads[name] = (out.double(), x.grad.double(), b.grad)
    tol = {"atol": 1e-10, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 0.05, "rtol": 0.05}
    for ours, reference in zip(grads["ours"], grads["sdpa"], strict=True):
        torch.testing.assert_close(ours, reference, **tol)
