"""Tests for stgcma.media: features, encoding, decoding of unusual uploads, rendering (STG-CMA Studio).

Every media file is generated here with PyAV in a temporary folder, tiny (low resolution, 1-3 s).
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from stgcma.config import PreprocessConfig
from stgcma.media.encode import write_video
from stgcma.media.features import frames_to_tensor, segment_fbanks, waveform_to_fbank

CFG = PreprocessConfig(image_size=32)


def test_frames_to_tensor_resizes_and_normalises():
    frames = np.full((2, 20, 30, 3), 255, dtype=np.uint8)
    x = frames_to_tensor(frames, CFG)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    expected = (1.0 - np.array(CFG.image_mean)) / np.array(CFG.image_std)
    assert torch.allclose(x[0, :, 5, 5], torch.tensor(expected, dtype=torch.float32), atol=1e-5)


def test_waveform_to_fbank_matches_reference_recipe():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000) + 0.5).astype(np.float32)
    out = waveform_to_fbank(wave, CFG)
    assert out.shape == (1, CFG.target_frames, CFG.num_mel_bins)
    w = torch.from_numpy(wave)
    ref = kaldi.fbank((w - w.mean())[None], htk_compat=True, sample_frequency=16000, use_energy=False,
                      window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    ref = torch.nn.functional.pad(ref, (0, 0, 0, 102 - ref.shape[0]))  # 98 frames -> 102
    ref = (ref - CFG.fbank_mean) / (2 * CFG.fbank_std)
    assert torch.allclose(out[0], ref, atol=1e-5)
    assert torch.all(out[0, 98:] == (0 - CFG.fbank_mean) / (2 * CFG.fbank_std))


def test_segment_fbanks_pads_last_segment():
    wave = np.random.default_rng(1).standard_normal(16000 + 8000).astype(np.float32)
    out = segment_fbanks(wave, 2, CFG)
    assert out.shape == (2, 1, 102, 128)
    assert torch.allclose(out[0], waveform_to_fbank(wave[:16000], CFG))
    padded = np.concatenate([wave[16000:], np.zeros(8000, np.float32)])
    assert torch.allclose(out[1], waveform_to_fbank(padded, CFG))


def test_write_video_is_browser_playable(tmp_path):
    frames = np.random.default_rng(2).integers(0, 255, (12, 31, 45, 3), dtype=np.uint8)
    audio = (0.3 * np.sin(np.linspace(0, 900, 2 * 22050))).astype(np.float32).reshape(2, -1)
    path = write_video(tmp_path / "a.mp4", frames, 12.0, audio, 22050)
    head = path.read_bytes()[:64]
    assert head.find(b"moov") < 64  # faststart: moov before mdat
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.format.name, v.width, v.height) == ("h264", "yuv420p", 46, 32)
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.channels == 2 and a.rate == 22050
        assert sum(1 for _ in c.decode(video=0)) == 12


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError):
        write_video(tmp_path / "b.mp4", np.zeros((0, 8, 8, 3), np.uint8), 10.0)
