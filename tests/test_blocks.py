"""The shared STG-CMA block pieces: reshapes, cross-attention maths, the folded temporal projection."""

import pytest
import torch

from stgcma.adapters import Adapter, BottleneckCrossAttention, LavishAdapter, TemporalBias
from stgcma.backbones import build_trunk
from stgcma.blocks import from_time, to_time
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
