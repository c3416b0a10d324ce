"""Shared test setup: offline, deterministic, small."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def random_inputs(config, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (video, audio) shaped for ``config``'s preprocessing."""
    pre = config.preprocess
    video = torch.randn(batch, pre.num_segments, 3, pre.image_size, pre.image_size)
    audio = torch.randn(batch, pre.num_segments, 1, pre.target_frames, pre.num_mel_bins)
    return video, audio


def save_task_checkpoints(root, preset: str = "vit-test", data: str = "synthav:seed=0,n=8",
                          tasks: tuple[str, ...] = ("ave", "avs", "avqa")):
    """Untrained checkpoints of ``preset``, one folder per task under ``root``, sized by ``data``."""
    from stgcma.checkpoint import save_checkpoint
    from stgcma.config import load_preset
    from stgcma.data.spec import build_dataset
    from stgcma.model import STGCMAModel
    from stgcma.train.config import TrainConfig
    from stgcma.train.loop import dataset_meta, model_config_for

    for task in tasks:
        cfg = TrainConfig(task=task, preset=preset, data=data)
        dataset = build_dataset(cfg.data, task, "train", load_preset(preset).preprocess)
        torch.manual_seed(0)
        save_checkpoint(STGCMAModel(model_config_for(cfg, [], dataset)), root / task, dataset_meta(dataset))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Files a person might upload by mistake, each with the decoder's verdict in the message."""
    import numpy as np
    from PIL import Image

    from tests.test_media import make_clip

    folder = tmp_path_factory.mktemp("corpus")
    ok = make_clip(folder / "source.mp4", seconds=3.0).read_bytes()  # moov at the end, as cameras write
    header = ok[: int.from_bytes(ok[:4], "big")]  # the ftyp box
    files = {
        "empty.mp4": b"",
        "notes.mp4": b"shopping list: milk, eggs\n" * 20,
        "cut.mp4": ok[: len(ok) // 2],
        "header then noise.mp4": header + np.random.default_rng(1).bytes(16384),
        "noise.mp4": np.random.default_rng(2).bytes(8192),
        "-odd name \u00e9\u00e8 \U0001f3b5.mp4": b"\x00" * 64 + b"not a video",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "photo.mp4", format="PNG")
    (folder / "source.mp4").unlink()
    return folder


def subprocess_env() -> dict[str, str]:
    """The environment of a ``python -m stgcma`` child process in a test: this repository on the path, one
    thread, offline, and no torchrun variables inherited from the parent."""
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env
