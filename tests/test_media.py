"""Tests for stgcma.media: features, encoding, decoding of unusual uploads, rendering (STG-CMA Studio).

Every media file is generated here with PyAV in a temporary folder, tiny (low resolution, 1-3 s).
"""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from stgcma.config import PreprocessConfig
from stgcma.media.clip import load_clip
from stgcma.media.decode import NO_AUDIO_WARNING, SILENT_WARNING, MediaLimits, decode_clip
from stgcma.media.encode import write_video
from stgcma.media.errors import (
    CorruptFileError,
    EmptyFileError,
    MediaError,
    MissingFileError,
    NotAVideoError,
    NoVideoStreamError,
    TooLargeError,
    TooLongError,
    UnsupportedCodecError,
)
from stgcma.media.features import frames_to_tensor, segment_fbanks, waveform_to_fbank
from stgcma.media.orient import orientation_of
from stgcma.media.render import DEFAULT_COLOR, mask_at, plot_timeline, render_mask_video, save_mask_pngs
from stgcma.media.segments import count_segments, segment_targets, windows

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


# --------------------------------------------------------------------------- decoding unusual uploads

LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def frame_code(i: int, h: int, w: int) -> np.ndarray:
    """A flat frame whose left/right halves encode the frame index (robust to lossy codecs)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (i % 8) * 32 + 16
    img[:, w // 2:] = (i // 8) * 32 + 16
    return img


def read_code(img: np.ndarray) -> int:
    h, w = img.shape[:2]
    left = int(round((img[h // 2, w // 4].mean() - 16) / 32))
    right = int(round((img[h // 2, 3 * w // 4].mean() - 16) / 32))
    return right * 8 + left


def make_clip(path, *, vcodec="libx264", fmt="mp4", size=(48, 32), fps=10, seconds=2.0, pts_s=None,
              acodec="aac", channels=2, rate=16000, audio=None, rotation=None, options=None, pix_fmt="yuv420p"):
    """Write a tiny test clip with PyAV; ``pts_s`` gives explicit frame times (variable frame rate)."""
    w, h = size
    times = pts_s if pts_s is not None else [i / fps for i in range(int(round(seconds * fps)))]
    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream(vcodec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if pts_s is not None:
            vs.time_base = Fraction(1, 1000)
            vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = options or {}
        if rotation is not None:
            vs.set_display_rotation(*np.atleast_1d(rotation))
        a_s = c.add_stream(acodec, rate=rate, layout=LAYOUTS[channels]) if acodec else None
        if acodec == "vorbis":
            a_s.options = {"strict": "experimental"}  # FFmpeg's native Vorbis encoder
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_code(i, h, w), format="rgb24")
            if pts_s is not None:
                frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            c.mux(vs.encode(frame))
        c.mux(vs.encode(None))
        if a_s is not None:
            n = int(round(seconds * rate))
            if audio is None:
                tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
                audio = np.repeat(tone[None], channels, 0)
            audio = np.asarray(audio, np.float32)
            fmt_name = "s16p" if acodec == "pcm_s16le" else a_s.codec_context.format.name
            data = (audio * 32767).astype(np.int16) if fmt_name.startswith("s16") else audio
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt_name.rstrip("p") + "p",
                                               layout=LAYOUTS[channels])
            frame.sample_rate, frame.pts = rate, 0
            c.mux(a_s.encode(frame))
            c.mux(a_s.encode(None))
    return path


@pytest.fixture(scope="module")
def ok_mp4(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("m") / "ok.mp4", seconds=3.0)


def one_line(err: Exception) -> str:
    text = str(err)
    assert text and "\n" not in text
    return text


@pytest.mark.parametrize("name, payload, error", [
    ("empty.mp4", b"", EmptyFileError),
    ("text.mp4", b"this is a shopping list, not a video\n" * 10, NotAVideoError),
    ("noise.mp4", np.random.default_rng(0).bytes(4096), NotAVideoError),
])
def test_bad_bytes_raise_typed_errors(tmp_path, name, payload, error):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(error) as info:
        decode_clip(path)
    assert isinstance(info.value, MediaError) and isinstance(info.value, ValueError)
    assert name in one_line(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError):
        decode_clip(tmp_path / "nope.mp4")


def test_image_renamed_mp4_is_not_a_video(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.mp4"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path, format="PNG")
    with pytest.raises(NotAVideoError, match="still image"):
        decode_clip(path)


def test_truncated_files(tmp_path, ok_mp4):
    data = ok_mp4.read_bytes()  # moov at the end, as most cameras write
    head = tmp_path / "head.mp4"
    head.write_bytes(data[: len(data) // 2])  # the index is lost: nothing readable
    with pytest.raises(CorruptFileError, match="damaged"):
        decode_clip(head)
    frames = np.stack([frame_code(i, 32, 48) for i in range(30)])
    audio = 0.3 * np.sin(np.linspace(0, 2000, 48000, dtype=np.float32))
    data = write_video(tmp_path / "fast.mp4", frames, 10.0, audio, 16000).read_bytes()  # moov first
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])  # media data cut: decode what is there
    clip = decode_clip(half)
    assert clip.damaged and 1 <= clip.num_segments < 3
    assert clip.frames.shape[0] == clip.num_segments
    assert any("damaged" in w for w in clip.warnings)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        decode_clip(path)


def test_unknown_codec_is_unsupported(tmp_path, ok_mp4):
    path = tmp_path / "alien.mp4"
    path.write_bytes(ok_mp4.read_bytes().replace(b"avc1", b"zzz1"))  # sample entry FFmpeg does not know
    with pytest.raises(UnsupportedCodecError):
        decode_clip(path)


def test_size_and_duration_limits(ok_mp4):
    with pytest.raises(TooLargeError, match="MB"):
        decode_clip(ok_mp4, limits=MediaLimits(max_file_bytes=1000))
    with pytest.raises(TooLongError, match="3 s long"):
        decode_clip(ok_mp4, limits=MediaLimits(max_duration_s=2.0, truncate=False))
    clip = decode_clip(ok_mp4, limits=MediaLimits(max_duration_s=2.0))
    assert clip.truncated and clip.num_segments == 2 and clip.duration == 2.0
    assert clip.waveform.shape == (32000,)
    assert any("first 2 s" in w for w in clip.warnings)


def test_healthy_clip_facts_and_frame_choice(ok_mp4):
    clip = decode_clip(ok_mp4)
    assert clip.num_segments == 3 and not clip.warnings and not clip.damaged
    assert (clip.video_codec, clip.audio_codec, clip.audio_channels) == ("h264", "aac", 2)
    assert (clip.width, clip.height, clip.rotation) == (48, 32, 0)
    assert clip.frames.shape == (3, 32, 48, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(clip.frame_times, [0.5, 1.5, 2.5])
    assert [read_code(f) for f in clip.frames] == [5, 15, 25]
    assert clip.waveform.dtype == np.float32 and clip.waveform.shape == (48000,)


def test_no_audio_track_runs_on_silence_with_warning(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "mute.mp4", acodec=None))
    assert not clip.has_audio and clip.audio_codec is None
    assert NO_AUDIO_WARNING in clip.warnings
    assert clip.waveform.shape == (32000,) and not clip.waveform.any()


def test_silent_audio_track_warns(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "quiet.mp4", audio=np.zeros((2, 32000))))
    assert clip.has_audio and SILENT_WARNING in clip.warnings


@pytest.mark.parametrize("seconds, segments", [(0.4, 1), (1.0, 1), (2.5, 3)])
def test_segment_count(tmp_path, seconds, segments):
    clip = decode_clip(make_clip(tmp_path / "c.mp4", seconds=seconds, acodec=None))
    assert clip.num_segments == segments and clip.frames.shape[0] == segments
    assert clip.waveform.shape == (int(round(clip.duration * 16000)),)


def test_60fps_picks_the_centre_frame(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "fast.mp4", fps=60, seconds=1.0, acodec=None))
    assert clip.fps == pytest.approx(60.0)
    assert read_code(clip.frames[0]) == 30 and clip.frame_times[0] == pytest.approx(0.5)


def test_variable_frame_rate_uses_timestamps(tmp_path):
    pts = [0.0, 0.05, 0.15, 0.8, 1.2, 1.45, 1.9]  # a burst, a gap, uneven spacing
    clip = decode_clip(make_clip(tmp_path / "vfr.mkv", fmt="matroska", pts_s=pts, seconds=2.0, acodec=None))
    assert clip.num_segments == 2
    assert [read_code(f) for f in clip.frames] == [3, 5]  # 0.8 s is nearest 0.5 s, 1.45 s nearest 1.5 s
    np.testing.assert_allclose(clip.frame_times, [0.8, 1.45])


@pytest.mark.parametrize("name, vcodec, fmt, acodec, expected", [
    ("vp9.webm", "libvpx-vp9", "webm", "libopus", ("vp9", "opus")),
    ("vp8.mkv", "libvpx", "matroska", "vorbis", ("vp8", "vorbis")),
    ("av1.mp4", "libsvtav1", "mp4", "aac", ("av1", "aac")),
])
def test_other_codecs_and_containers(tmp_path, name, vcodec, fmt, acodec, expected):
    size = (64, 64) if vcodec == "libsvtav1" else (48, 32)
    rate = 48000 if acodec == "libopus" else 16000
    opts = {"preset": "12"} if vcodec == "libsvtav1" else None
    path = make_clip(tmp_path / name, vcodec=vcodec, fmt=fmt, acodec=acodec, size=size, rate=rate,
                     options=opts)
    clip = decode_clip(path)
    assert (clip.video_codec, clip.audio_codec) == expected
    assert clip.num_segments == 2 and [read_code(f) for f in clip.frames] == [5, 15]
    assert clip.has_audio and np.abs(clip.waveform).max() > 0.05 and not clip.warnings


@pytest.mark.parametrize("name, kwargs, playable", [
    ("h264.mp4", {}, True),
    ("silent.mov", {"fmt": "mov", "acodec": None}, True),
    ("vp9.webm", {"vcodec": "libvpx-vp9", "fmt": "webm", "acodec": "libopus", "rate": 48000}, True),
    ("vp8.mkv", {"vcodec": "libvpx", "fmt": "matroska", "acodec": "vorbis"}, False),  # Safari plays no Matroska
    ("h264-444.mp4", {"pix_fmt": "yuv444p"}, False),  # Chrome and Firefox play 4:2:0 H.264 only
    ("mpeg4.avi", {"vcodec": "mpeg4", "fmt": "avi", "acodec": "pcm_s16le"}, False),
])
def test_browser_playable_is_decided_from_the_decoded_facts(tmp_path, name, kwargs, playable):
    from stgcma.media.browser import browser_playable

    facts = decode_clip(make_clip(tmp_path / name, **kwargs)).facts()
    assert browser_playable(facts) is playable, facts
    renamed = tmp_path / (name + ".bin")  # the same bytes under a name the server sends as octet-stream
    renamed.write_bytes((tmp_path / name).read_bytes())
    assert not browser_playable(facts, renamed)


def test_mask_layers_are_the_overlay_colour_with_the_mask_as_opacity():
    import cv2

    from stgcma.media.browser import layer_size, mask_layers

    assert layer_size(1280, 720) == (320, 180) and layer_size(720, 1280) == (180, 320)
    masks = np.zeros((2, 4, 4), np.float32)
    masks[0, :, :2] = 1.0  # left half sounding in the first second, nothing in the second
    layers = [cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED) for png in mask_layers(masks, (32, 18))]
    assert [layer.shape for layer in layers] == [(18, 32, 4)] * 2
    first, second = layers
    assert (first[..., 2::-1] == DEFAULT_COLOR).all()  # BGRA on disk: the RGB colour everywhere
    assert first[:, :12, 3].min() == 128 and first[:, 20:, 3].max() == 0  # opacity 0.5 x mask
    assert second[..., 3].max() == 0


def test_theora_decoder_is_bundled():
    # The PyAV wheel decodes Theora/Vorbis .mkv/.ogv but has no Theora encoder to write a test file.
    assert av.Codec("theora", "r").name == "theora" and av.Codec("vorbis", "r").name == "vorbis"
    with pytest.raises(av.codec.codec.UnknownCodecError):
        av.Codec("libtheora", "w")


def test_4k_frames_are_capped(tmp_path):
    path = make_clip(tmp_path / "uhd.mp4", size=(3840, 2160), fps=2, seconds=1.0, acodec=None,
                     options={"preset": "ultrafast"})
    clip = decode_clip(path, limits=MediaLimits(max_frame_side=256))
    assert (clip.width, clip.height) == (3840, 2160)
    assert clip.frames.shape == (1, 144, 256, 3)


@pytest.mark.parametrize("channels, rate", [(1, 8000), (2, 44100), (6, 48000), (2, 96000), (1, 22050)])
def test_audio_layouts_and_rates(tmp_path, channels, rate):
    clip = decode_clip(make_clip(tmp_path / "a.mp4", channels=channels, rate=rate))
    assert clip.audio_channels == channels and clip.audio_sample_rate == rate
    assert clip.sample_rate == 16000 and clip.waveform.shape == (32000,)
    spectrum = np.abs(np.fft.rfft(clip.waveform[4000:20000]))  # 16000 samples: 1 Hz per bin
    assert abs(int(np.argmax(spectrum)) - 440) <= 2  # the 440 Hz tone survives mixdown and resampling


def test_all_channels_are_mixed(tmp_path):
    n = 32000
    tone = 0.4 * np.sin(2 * np.pi * 300 * np.arange(n) / 16000)
    only_right = make_clip(tmp_path / "r.mkv", fmt="matroska", acodec="pcm_s16le",
                           audio=np.stack([np.zeros(n), tone]))
    opposite = make_clip(tmp_path / "o.mkv", fmt="matroska", acodec="pcm_s16le",
                         audio=np.stack([tone, -tone]))
    assert np.abs(decode_clip(only_right).waveform).max() > 0.1  # not just channel 0
    assert np.abs(decode_clip(opposite).waveform).max() < 0.01  # a true mix: opposite channels cancel


def _corner(img: np.ndarray) -> str:
    h, w = img.shape[:2]
    quads = [img[: h // 2, : w // 2], img[: h // 2, w // 2:], img[h // 2:, : w // 2], img[h // 2:, w // 2:]]
    return ["TL", "TR", "BL", "BR"][int(np.argmax([q.mean() for q in quads]))]


# (set_display_rotation args, corner where a top-left marker must end up, displayed is portrait).
# PyAV documents the angle as counter-clockwise and the flips as applied after the rotation.
ROTATIONS = [((0,), "TL", False), ((90,), "BL", True), ((-90,), "TR", True), ((180,), "BR", False),
             ((0, True), "TR", False), ((0, False, True), "BL", False), ((90, True), "BR", True),
             ((-90, True), "TL", True), ((90, False, True), "TL", True)]


@pytest.mark.parametrize("args, corner, portrait", ROTATIONS)
def test_rotation_metadata_is_honoured(tmp_path, args, corner, portrait):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=2)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.set_display_rotation(*args)
        img = np.zeros((32, 48, 3), np.uint8)
        img[:16, :24] = 255
        for _ in range(2):
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    clip = decode_clip(path)
    assert _corner(clip.frames[0]) == corner
    assert (clip.height > clip.width) == portrait and (clip.frames.shape[1] > clip.frames.shape[2]) == portrait
    orientation = orientation_of(next(av.open(str(path)).decode(video=0)))
    assert np.array_equal(orientation.invert(orientation.apply(img)), img)


def test_seeking_over_short_gops_matches_sequential(tmp_path):
    path = make_clip(tmp_path / "gop.mp4", fps=10, seconds=5.0, acodec=None,
                     options={"x264-params": "keyint=3:min-keyint=3:scenecut=0", "bf": "2"})
    seq = decode_clip(path, allow_seek=False)
    sought = decode_clip(path)
    assert seq.decode_mode == "sequential" and sought.decode_mode == "seek"
    assert [read_code(f) for f in sought.frames] == [read_code(f) for f in seq.frames] == [5, 15, 25, 35, 45]
    np.testing.assert_allclose(sought.frame_times, seq.frame_times)


def test_windows_cover_a_long_clip():
    plan = windows(23, 10)
    assert plan.index.shape == (3, 10) and plan.mask.sum() == 23
    assert plan.index[2].tolist() == [20, 21, 22, 22, 22, 22, 22, 22, 22, 22]
    x = torch.arange(23.0)[:, None].expand(23, 4)  # (N, 4)
    y = plan.gather(x)  # (W, T, 4)
    assert y.shape == (3, 10, 4) and torch.equal(plan.scatter(y), x)
    assert windows(60, 10).mask.all() and windows(3, 10).index.shape == (1, 10)
    assert segment_targets(3, 2.4).tolist() == pytest.approx([0.5, 1.5, 2.2])
    assert [count_segments(d) for d in (0.2, 1.0, 1.05, 10.02, 10.5, 59.99)] == [1, 1, 1, 10, 11, 60]


def test_load_clip_gives_model_tensors(ok_mp4):
    inputs = load_clip(ok_mp4, CFG)
    assert inputs.video.shape == (3, 3, 32, 32) and inputs.audio.shape == (3, 1, 102, 128)
    assert inputs.num_segments == 3 and inputs.windows(2).index.shape == (2, 2)
    clip = inputs.clip
    assert torch.allclose(inputs.audio, segment_fbanks(clip.waveform, 3, CFG))
    assert torch.allclose(inputs.video, frames_to_tensor(clip.frames, CFG))


# --------------------------------------------------------------------------- rendering


def _gray_clip(path, size=(48, 32), rotation=None, seconds=2.0):
    """A mid-grey clip with a 440 Hz stereo tone (overlays show up as colour on grey)."""
    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotation is not None:
            vs.set_display_rotation(rotation)
        a_s = c.add_stream("aac", rate=16000, layout="stereo")
        for _ in range(int(seconds * 10)):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 128, np.uint8), format="rgb24")))
        c.mux(vs.encode(None))
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 16000, 0
        c.mux(a_s.encode(frame))
        c.mux(a_s.encode(None))
    return path


def _redness(img: np.ndarray) -> float:
    return float(img[..., 0].astype(np.float32).mean() - img[..., 2].astype(np.float32).mean())


def test_mask_at_crossfades_between_segment_centres():
    masks = np.stack([np.zeros((2, 2)), np.ones((2, 2))])
    assert mask_at(masks, 0.2).max() == 0.0 and mask_at(masks, 1.9).min() == 1.0
    assert np.allclose(mask_at(masks, 1.0), 0.5)
    assert mask_at(masks, 0.99, crossfade=False).max() == 0.0 and mask_at(masks, 1.0, crossfade=False).min() == 1


def test_render_mask_video_over_all_frames_with_audio(tmp_path):
    src = _gray_clip(tmp_path / "src.mp4")
    masks = np.zeros((2, 8, 8), np.float32)
    masks[0, :4, :4] = 1.0  # second 0: top-left
    masks[1, 4:, 4:] = 1.0  # second 1: bottom-right
    out = render_mask_video(src, masks, tmp_path / "out.mp4", crossfade=False, color=(255, 0, 0), alpha=0.6)
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, v.format.name, a.codec_context.name) == ("h264", "yuv420p", "aac")
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    assert len(frames) == 20  # every source frame, not one per segment
    t0, early = frames[2]
    t1, late = frames[15]
    assert t0 < 1.0 <= t1
    assert _redness(early[:14, :20]) > 60 and abs(_redness(early[18:, 28:])) < 10
    assert _redness(late[18:, 28:]) > 60 and abs(_redness(late[:14, :20])) < 10
    clip = decode_clip(out)
    assert clip.has_audio and not clip.warnings and clip.duration == pytest.approx(2.0, abs=0.05)
    spectrum = np.abs(np.fft.rfft(clip.waveform[4000:20000]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2


def test_the_yuv_blend_is_the_rgb_blend():
    from stgcma.media.render import overlay, overlay_yuv

    rng = np.random.default_rng(0)
    image = cv2_smooth(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    mask = rng.random((6, 8)).astype(np.float32)
    packed = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray()  # (72, 64)
    planes = (packed[:48], packed[48:60].reshape(24, 32), packed[60:].reshape(24, 32))
    y, u, v = overlay_yuv(planes, mask, color=(255, 64, 32), alpha=0.5)
    blended = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(72, 64)
    back = av.VideoFrame.from_ndarray(blended, format="yuv420p").reformat(format="rgb24").to_ndarray()
    reference = av.VideoFrame.from_ndarray(overlay(image, mask, color=(255, 64, 32), alpha=0.5), format="rgb24")
    expected = reference.reformat(format="yuv420p").reformat(format="rgb24").to_ndarray()  # the same round trip
    assert np.abs(back.astype(int) - expected.astype(int)).mean() < 2.0


def cv2_smooth(image: np.ndarray) -> np.ndarray:
    """A picture rather than noise: 4:2:0 chroma of per-pixel noise is not what videos hold."""
    import cv2

    return cv2.GaussianBlur(image, (9, 9), 3)


def test_render_honours_rotation(tmp_path):
    src = _gray_clip(tmp_path / "phone.mp4", rotation=-90, seconds=1.0)
    masks = np.zeros((1, 8, 8), np.float32)
    masks[0, :4, :4] = 1.0  # top-left of the upright picture the model saw
    out = render_mask_video(src, masks, tmp_path / "out.mp4", color=(255, 0, 0))
    clip = decode_clip(out)
    assert (clip.width, clip.height, clip.rotation) == (32, 48, 0)  # written upright, portrait
    img = clip.frames[0]
    assert _redness(img[:20, :12]) > 40 and abs(_redness(img[28:, 20:])) < 10


def test_mask_pngs_and_timeline(tmp_path):
    masks = np.random.default_rng(0).random((3, 7, 7)).astype(np.float32)
    paths = save_mask_pngs(masks, tmp_path / "masks", size=(40, 30))
    assert [p.name for p in paths] == ["mask_0000.png", "mask_0001.png", "mask_0002.png"]
    from PIL import Image

    png = np.asarray(Image.open(paths[1]))
    assert png.shape == (30, 40) and png.dtype == np.uint8
    assert np.array_equal(np.asarray(Image.open(save_mask_pngs(masks, tmp_path / "raw")[0])),
                          np.clip(masks[0] * 255 + 0.5, 0, 255).astype(np.uint8))
    names = [f"event {i}" for i in range(4)] + ["background"]
    probs = np.random.default_rng(1).dirichlet(np.ones(5), size=6)
    figure = plot_timeline(probs, names, tmp_path / "timeline.png")
    image = Image.open(figure)
    assert image.format == "PNG" and image.size[0] > 300
    with pytest.raises(ValueError):
        plot_timeline(probs[:, :3], names, tmp_path / "bad.png")


# --------------------------------------------------------------------------- CLI


def test_inspect_command(ok_mp4, tmp_path, capsys):
    from stgcma.cli import main

    assert main(["inspect", str(ok_mp4), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file"]["num_segments"] == 3 and info["warnings"] == []
    model = info["model"]
    assert model["segments"] == 3 and model["frame_times"] == [0.5, 1.5, 2.5]
    assert model["audio_shape"][0] == model["video_shape"][0] == 3
    assert main(["inspect", str(ok_mp4), "--max-duration", "2"]) == 0
    text = capsys.readouterr().out
    assert "segments  2 x 1 s" in text and "only the first 2 s" in text
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: notes.mp4 is not a video") and err.count("\n") == 1
    assert main(["inspect", str(ok_mp4), "--max-duration", "1", "--no-truncate"]) == 2
    assert "limit is 1 s" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_decode_returns_seconds():
    from stgcma.media.bench import bench_decode

    seconds = bench_decode(PreprocessConfig(image_size=32, num_mel_bins=32, target_frames=32), runs=1)
    assert 0.0 < seconds < 30.0


def test_animated_gif_is_a_video_and_progress_is_reported(tmp_path):
    from PIL import Image

    images = [Image.fromarray(frame_code(i, 20, 30)) for i in range(5)]
    path = tmp_path / "anim.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=300, loop=0)
    seen: list[float] = []
    clip = decode_clip(path, progress=seen.append)
    assert clip.video_codec == "gif" and clip.num_segments == 2
    np.testing.assert_allclose(clip.frame_times, [0.6, 1.2])  # nearest to 0.5 s and to 1.25 s
    assert seen == [0.5, 1.0] and NO_AUDIO_WARNING in clip.warnings
