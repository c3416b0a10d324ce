"""Out of its world: fresh clips of a model's own world pass, another world and a photo are flagged.

One tiny shapes-world model (vit-test) is trained once per module; ``fit`` writes its world
statistics from validation clips. The photo-like clip is a real photograph (matplotlib's sample
image) panned like a hand-held camera, with noise bursts for sound.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from stgcma import ood
from stgcma.checkpoint import load_model, save_checkpoint
from stgcma.cli import main as cli_main
from stgcma.data.spec import build_dataset
from stgcma.data.synthav.folder import write_synthav
from stgcma.data.synthav.scene import SynthConfig
from stgcma.inference import Predictor
from stgcma.media.encode import write_video
from stgcma.media.features import frames_to_tensor, segment_fbanks
from stgcma.train import TrainConfig, fit

OWN = "synthav:seed=31,n=6,world=shapes"
OTHER = "synthav:seed=31,n=6,world=music,classes=8"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("ood") / "run"
    cfg = TrainConfig(task="ave", preset="vit-test", data="synthav:seed=0,n=8,world=shapes",
                      val_data="synthav:seed=1,n=100,world=shapes", out=str(out), epochs=1, batch_size=4,
                      ood_clips=100, seed=0)
    fit(cfg, progress=False)
    return out


def photo_clip(pre, seconds: int, fps: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photograph panned over ``seconds`` (frames (N, s, s, 3) uint8, one per segment or at ``fps``) and
    noise bursts (samples at ``pre.sample_rate``)."""
    import cv2
    from matplotlib import cbook

    image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[..., ::-1]  # (H, W, 3)
    count = seconds * fps if fps else seconds
    side = min(image.shape[:2]) * 2 // 3
    frames = []
    for i in range(count):
        y = int((image.shape[0] - side) * i / max(count - 1, 1))
        x = int((image.shape[1] - side) * (1 - i / max(count - 1, 1)))
        frames.append(cv2.resize(np.ascontiguousarray(image[y:y + side, x:x + side]), (pre.image_size * 2,) * 2))
    rng = np.random.default_rng(seed)
    samples = seconds * pre.sample_rate
    noise = np.convolve(rng.standard_normal(samples), np.ones(8) / 8, mode="same")
    bursts = (np.sin(np.linspace(0, 7 * np.pi * seconds, samples)) > 0.6).astype(float)
    return np.stack(frames), (0.4 * noise / np.abs(noise).max() * (0.15 + bursts)).astype(np.float32)


def verdicts(stats, vectors) -> list[dict]:
    return [stats.verdict({s: vectors[s][i] for s in ood.STREAMS}) for i in range(len(vectors["video"]))]


def test_fit_stores_world_statistics_in_the_selected_checkpoint(run):
    stats, note = ood.read_world_stats(run / "best")
    assert note is None and stats is not None
    assert stats.world == "SynthAV Shapes" and stats.block == 0
    assert stats.info["clips_fit"] == 50 and stats.info["clips_calibration"] == 50
    assert all(t > 0 for t in stats.thresholds.values())
    assert (run / "best" / ood.STATS_NAME).stat().st_size < 200_000
    assert not (run / "last" / ood.STATS_NAME).exists()


def test_own_world_passes_other_world_and_photo_are_flagged(run):
    model, _ = load_model(run / "best")
    stats = ood.load_world_stats(run / "best")
    pre = model.config.preprocess
    own = verdicts(stats, ood.collect(model, build_dataset(OWN, "ave", "test", pre), 6, stats.block))
    other = verdicts(stats, ood.collect(model, build_dataset(OTHER, "ave", "test", pre), 6, stats.block))
    frames, wave = photo_clip(pre, pre.num_segments)
    with ood.capture(model, stats.block) as records, torch.no_grad():
        model.forward_features(frames_to_tensor(frames, pre)[None], segment_fbanks(wave, pre.num_segments, pre)[None])
    photo = stats.verdict({s: records[0][s].numpy() for s in ood.STREAMS})
    assert not any(v["out_of_world"] for v in own), [v["streams"] for v in own]
    assert sum(v["out_of_world"] for v in other) >= 5, [v["streams"] for v in other]  # measured: ~90% of them
    assert photo["out_of_world"], photo["streams"]
    ratio = [v["distance"] / v["threshold"] for v in own]
    assert max(ratio) < np.median([v["distance"] / v["threshold"] for v in other])
    assert max(ratio) < photo["distance"] / photo["threshold"]


@pytest.fixture(scope="module")
def clips(run, tmp_path_factory):
    """One fresh own-world mp4 and one photo-like mp4 (4 seconds each)."""
    model, _ = load_model(run / "best")
    pre = model.config.preprocess
    out = tmp_path_factory.mktemp("clips")
    write_synthav(out / "own", n=1, seed=41, split="test", tasks=("ave",), size=64,
                  config=SynthConfig(num_segments=pre.num_segments, world="shapes"), progress=False)
    frames, wave = photo_clip(pre, pre.num_segments, fps=8)
    write_video(out / "photo.mp4", frames, 8, wave, pre.sample_rate)
    return {"own": next((out / "own" / "videos").glob("*.mp4")), "photo": out / "photo.mp4"}


def test_analysis_says_when_a_clip_is_out_of_world(run, clips, tmp_path):
    from stgcma.report import write_report

    predictor = Predictor.from_pretrained(run / "best")
    own = predictor.analyze(clips["own"])
    assert own.world["out_of_world"] is False and own.world["world"] == "SynthAV Shapes"
    assert not any("unlike anything" in w for w in own.warnings)
    photo = predictor.analyze(clips["photo"])
    assert photo.world["out_of_world"] is True and photo.world["distance"] > photo.world["threshold"]
    message = "This clip looks unlike anything this model was trained on (SynthAV Shapes)"
    assert photo.warnings[0].startswith(message)
    write_report(predictor, clips["photo"], photo, tmp_path / "photo", explain=False)
    saved = json.loads((tmp_path / "photo" / "result.json").read_text())
    assert saved["out_of_world"] is True and saved["warnings"][0].startswith(message)
    assert saved["ood_distance"] > saved["ood_threshold"] > 0
    assert set(saved["ood"]["tasks"]["ave"]["streams"]) == {"video", "audio"}


def test_checkpoint_without_statistics_still_analyses(run, clips, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run / "best", old)
    (old / ood.STATS_NAME).unlink()
    predictor = Predictor.from_pretrained(old)
    analysis = predictor.analyze(clips["photo"])
    result = analysis.to_dict()
    assert result["out_of_world"] is None and result["ood_distance"] is None
    assert "calibrate-ood" in result["ood"]["note"]
    assert analysis.ave is not None and len(analysis.ave["labels"]) == analysis.facts["num_segments"]


def test_statistics_of_other_weights_are_ignored(run, tmp_path):
    folder = tmp_path / "changed"
    shutil.copytree(run / "best", folder)
    model, meta = load_model(folder)
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(1.0)
    save_checkpoint(model, folder, meta)  # new weights, the old statistics file stays
    stats, note = ood.read_world_stats(folder)
    assert stats is None and "other weights" in note


def test_calibrate_command_adds_statistics_to_an_existing_checkpoint(run, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(run / "best", folder)
    (folder / ood.STATS_NAME).unlink()
    assert cli_main(["calibrate-ood", "--checkpoint", str(folder), "--data", "synthav:seed=1,n=8,world=shapes",
                     "--n", "8", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["world"] == "SynthAV Shapes" and summary["clips_fit"] == 4
    assert ood.load_world_stats(folder) is not None
    # a checkpoint's world must be its own: a dataset with other classes is refused in one line
    assert cli_main(["calibrate-ood", "--checkpoint", str(folder), "--data",
                     "synthav:seed=1,n=8,world=music,classes=8", "--n", "8", "--quiet"]) == 2
    assert "differ from the checkpoint's" in capsys.readouterr().err
    assert cli_main(["calibrate-ood", "--checkpoint", "default", "--data", OWN, "--quiet"]) == 2
    assert "pass a task" in capsys.readouterr().err


def test_gaussian_distance_is_one_for_typical_points_and_grows_off_the_data():
    rng = np.random.default_rng(0)
    scales = np.linspace(0.1, 3.0, 96)
    x = rng.standard_normal((4000, 96)) * scales
    g = ood.Gaussian.fit(x, k=16)
    fresh = rng.standard_normal((500, 96)) * scales
    assert g.squared(fresh).mean() == pytest.approx(1.0, rel=0.1)
    assert g.basis.shape == (16, 96)
    along = fresh + 6 * scales[-1] * g.basis[0]  # 6 standard deviations along the main direction
    assert g.squared(along).mean() > 1.25
    outside = fresh.copy()
    outside[:, 0] += 6 * np.sqrt(g.residual)  # off the kept components: measured against the residual variance
    assert g.squared(outside).mean() > 1.3


@pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")  # gr.Warning outside a request: expected here
def test_the_app_shows_the_out_of_world_banner_once(run, clips, tmp_path):
    from app.main import make_context
    from app.state import Session
    from app.tabs.analyze import AnalyzeTab

    ctx = make_context(str(run / "best"), "cpu", runs=tmp_path / "runs", examples=tmp_path / "none",
                       work_dir=tmp_path / "work")
    tab = AnalyzeTab(ctx)
    own = tab.analyze(str(clips["own"]), Session(), progress=lambda *a, **k: None)
    assert "unlike anything" not in own[5]
    photo = tab.analyze(str(clips["photo"]), Session(), progress=lambda *a, **k: None)
    banner = photo[5]
    assert banner.count("unlike anything this model was trained on") == 1, banner  # the banner, not also a warning
    assert "stg-error" in banner and "SynthAV Shapes" in banner


@pytest.mark.slow
def test_the_shipped_default_knows_its_examples_and_flags_other_worlds(tmp_path):
    from pathlib import Path

    from stgcma.checkpoint import DEFAULT_DIR
    from stgcma.data.synthav.scene import SynthConfig as Config

    examples = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.mp4"))
    predictor = Predictor.from_pretrained(DEFAULT_DIR)
    assert examples and all(predictor.world_stats[t][0] is not None for t in predictor.tasks)
    verdicts = {p.name: predictor.analyze(p).world for p in examples}
    assert not any(v["out_of_world"] for v in verdicts.values()), verdicts  # measured: at most 0.78x the threshold
    write_synthav(tmp_path / "shapes", n=6, seed=777, split="test", tasks=("ave",), size=112,
                  config=Config(num_segments=10, world="shapes"), progress=False)
    clips = sorted((tmp_path / "shapes" / "videos").glob("*.mp4"))
    shapes = [predictor.analyze(p).world["out_of_world"] for p in clips]
    assert sum(shapes) >= 3, shapes  # measured: 8 of 10
    pre = predictor.models["ave"].config.preprocess
    frames, wave = photo_clip(pre, 10, fps=8)
    write_video(tmp_path / "photo.mp4", frames, 8, wave, pre.sample_rate)
    assert predictor.analyze(tmp_path / "photo.mp4").world["out_of_world"]
