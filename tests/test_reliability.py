"""Reliability (issue 14, library half): damaged checkpoints are refused in one line and never half-loaded; a
full disk keeps the previous checkpoint; one training job per run folder; the analyze command answers bad
files in one line; the decoder, fed mutated mp4 bytes, decodes or raises a MediaError and nothing else."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import stgcma.checkpoint as ckpt
from stgcma.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    atomic_torch_save,
    atomic_write_bytes,
    file_sha256,
    load_model,
    load_weights_into,
    save_checkpoint,
)
from stgcma.media import MediaError, MediaLimits, decode_clip
from stgcma.model import create_model
from stgcma.train import TrainConfig, fit
from stgcma.train.lock import LOCK_NAME, RunLock, RunLockedError
from stgcma.train.loop import TrainingError
from tests.conftest import subprocess_env
from tests.test_media import make_clip

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "music-02-solo.mp4"



def _one_line(text: str) -> str:
    text = text.strip()
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# --------------------------------------------------------------------------- damaged checkpoints


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A saved vit-test checkpoint (trained-looking weights) and its tensors."""
    torch.manual_seed(1)
    model = create_model("vit-test")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    folder = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "good", {"init_seed": 1})
    return folder, load_file(str(folder / WEIGHTS_NAME))


def _rehash(folder):
    """Make the config's hash agree with the (tampered) weights, so the checks behind the hash are reached."""
    doc = json.loads((folder / CONFIG_NAME).read_text())
    doc["weights_sha256"] = file_sha256(folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(doc))


def _edit_config(folder, change):
    doc = json.loads((folder / CONFIG_NAME).read_text())
    change(doc)
    (folder / CONFIG_NAME).write_text(json.dumps(doc))


def _edit_tensors(folder, change):
    tensors = load_file(str(folder / WEIGHTS_NAME))
    change(tensors)
    save_file(tensors, str(folder / WEIGHTS_NAME))
    _rehash(folder)


def _first(tensors):
    return next(k for k, v in tensors.items() if v.is_floating_point())


def _cut_weights(folder):
    (folder / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes()[:1000])
    _rehash(folder)


def _random_weights(folder):
    (folder / WEIGHTS_NAME).write_bytes(np.random.default_rng(0).bytes(8192))
    _rehash(folder)


def _empty_weights_no_hash(folder):
    (folder / WEIGHTS_NAME).write_bytes(b"")
    _edit_config(folder, lambda doc: doc.update(weights_sha256=None))


def _other_model(folder):
    save_checkpoint(create_model("swin-test"), folder.parent / "swin")
    shutil.copy(folder.parent / "swin" / WEIGHTS_NAME, folder / WEIGHTS_NAME)
    _rehash(folder)


# (case, damage, what the one-line message must say); each case's message also names the damaged file
DAMAGE = [
    ("weights cut short", _cut_weights, "not a readable safetensors file"),
    ("weights random bytes", _random_weights, "not a readable safetensors file"),
    ("weights empty, no hash", _empty_weights_no_hash, "not a readable safetensors file"),
    ("tensor of the wrong shape",
     lambda f: _edit_tensors(f, lambda t: t.update({_first(t): torch.zeros(3, 5)})), "has shape (3, 5)"),
    ("tensor of the wrong dtype",
     lambda f: _edit_tensors(f, lambda t: t.update({_first(t): t[_first(t)].to(torch.int32)})), "torch.int32"),
    ("tensor with NaN",
     lambda f: _edit_tensors(f, lambda t: t.update({_first(t): t[_first(t)] * float("nan")})), "NaN"),
    ("weights of another model", _other_model, "tensors this model does not"),
    ("config not UTF-8", lambda f: (f / CONFIG_NAME).write_bytes(b"\xff\xfe\x00\x81garbage"), "not valid JSON"),
    ("config a JSON list", lambda f: (f / CONFIG_NAME).write_text("[1, 2]"), "not an STG-CMA adapter checkpoint"),
    ("config unknown field",
     lambda f: _edit_config(f, lambda d: d["model"]["adapter"].update(bogus=1)), "unknown key(s) ['bogus']"),
    ("config unknown backbone",
     lambda f: _edit_config(f, lambda d: d["model"]["backbone"].update(name="no-such-net")), "unknown backbone"),
    ("config unknown task",
     lambda f: _edit_config(f, lambda d: d["model"]["head"].update(task="zzz")), "'zzz' is not one of"),
    ("config meta not an object", lambda f: _edit_config(f, lambda d: d.update(meta=[1])), "'meta' must be an object"),
    ("config hash not a string",
     lambda f: _edit_config(f, lambda d: d.update(weights_sha256=5)), "'weights_sha256' must be a hex string"),
    ("config negative class count",
     lambda f: _edit_config(f, lambda d: d["model"]["head"].update(num_classes=-3)), "cannot be built"),
    ("config is a folder", lambda f: ((f / CONFIG_NAME).unlink(), (f / CONFIG_NAME).mkdir()), "cannot be read"),
]


@pytest.mark.parametrize("case, damage, says", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_checkpoint_is_refused_in_one_line(tmp_path, good, case, damage, says):
    folder = tmp_path / "ckpt"
    shutil.copytree(good[0], folder)
    damage(folder)
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = _one_line(str(info.value))
    assert says in message and str(folder) in message


def test_a_refused_checkpoint_leaves_the_model_untouched(tmp_path, good):
    """Every tensor is checked before any is copied: a file whose LAST tensor is bad changes nothing."""
    folder = tmp_path / "ckpt"
    shutil.copytree(good[0], folder)
    last = [k for k, v in good[1].items() if v.is_floating_point()][-1]

    def shift_all_then_spoil_last(tensors):
        for k, v in tensors.items():
            if v.is_floating_point():
                tensors[k] = v + 1.0
        tensors[last] = tensors[last] * float("inf")

    _edit_tensors(folder, shift_all_then_spoil_last)
    model, _ = load_model(good[0])
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    with pytest.raises(CheckpointError, match="infinite"):
        load_weights_into(model, folder)
    after = model.trainable_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------------------- a full disk while saving


def _disk_fills(write, path_arg=1):
    """A writer that puts half of what it would write on disk, then fails as a full disk does."""

    def fake(*args, **kwargs):
        write(*args, **kwargs)
        target = Path(args[path_arg])
        os.truncate(target, target.stat().st_size // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    return fake


@pytest.mark.parametrize("fails", ["weights", "config"])
def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, good, monkeypatch, fails):
    folder = tmp_path / "ckpt"
    shutil.copytree(good[0], folder)
    before = {name: (folder / name).read_bytes() for name in (WEIGHTS_NAME, CONFIG_NAME)}
    newer = create_model("vit-test")
    with torch.no_grad():
        for p in newer.parameters():
            if p.requires_grad:
                p.add_(0.5)
    if fails == "weights":
        monkeypatch.setattr(ckpt, "save_file", _disk_fills(ckpt.save_file))
    else:
        real = Path.write_bytes

        def config_write(self, data):
            if self.name.startswith(f".{CONFIG_NAME}."):
                real(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", config_write)
    with pytest.raises(OSError) as info:
        save_checkpoint(newer, folder, {"init_seed": 1})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME])  # no stray temporaries
    assert {name: (folder / name).read_bytes() for name in before} == before
    model, _ = load_model(folder)
    for k, v in good[1].items():
        assert torch.equal(model.trainable_state_dict()[k], v), k


def test_full_disk_keeps_run_files_and_training_state(tmp_path, monkeypatch):
    """config.json/summary.json (atomic_write_bytes) and state.pt (atomic_torch_save) survive a full disk too."""
    summary, state = tmp_path / "summary.json", tmp_path / "state.pt"
    atomic_write_bytes(summary, b'{"old": true}')
    atomic_torch_save({"epoch": 1}, state)
    real = Path.write_bytes

    def full(self, data):
        real(self, data[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError):
        atomic_write_bytes(summary, b'{"new": true, "padding": "' + b"x" * 1000 + b'"}')
    monkeypatch.setattr(torch, "save", _disk_fills(torch.save))
    with pytest.raises(OSError):
        atomic_torch_save({"epoch": 2, "big": torch.zeros(1000)}, state)
    monkeypatch.undo()
    assert summary.read_bytes() == b'{"old": true}'
    assert torch.load(state, weights_only=False) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt", "summary.json"]


# --------------------------------------------------------------------------- one job per run folder


def _cfg(out, **kw):
    return TrainConfig(task="ave", preset="vit-test", data="synthav:seed=0,n=8", out=str(out), epochs=1,
                       batch_size=4, **kw)


def test_a_held_run_folder_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        assert RunLock(run).owner() == os.getpid()
        started = time.time()
        with pytest.raises(TrainingError) as info:
            fit(_cfg(run), progress=False)
        assert time.time() - started < 5.0  # refused before datasets or models are built
        message = _one_line(str(info.value))
        assert f"pid {os.getpid()}" in message and str(run) in message
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
        with pytest.raises(RunLockedError):  # the refused job did not take or drop the lock
            RunLock(run).acquire()
    assert RunLock(run).owner() is None  # released: no pid left behind


def test_the_lock_is_released_when_training_fails(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="divisible"):
        fit(_cfg(run, accum_steps=3), progress=False)  # raised after the lock was taken
    with RunLock(run):  # free again (a second description of a held flock would be refused)
        pass


@pytest.mark.slow
def test_two_processes_cannot_train_into_one_folder(tmp_path):
    """A second job fails fast naming the first one's pid; after a SIGKILL its stale lock is taken over."""
    run = tmp_path / "run"

    def train(*extra):
        return [sys.executable, "-m", "stgcma", "train", "--task", "ave", "--preset", "vit-test", "--data",
                "synthav:seed=0,n=8", "--out", str(run), "--quiet", "batch_size=4", *extra]

    first = subprocess.Popen(train("epochs=1000"), env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while RunLock(run).owner() != first.pid and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert RunLock(run).owner() == first.pid, "the first job never took the lock"
        for second in (train("epochs=1"), [sys.executable, "-m", "stgcma", "train", "--resume", str(run)]):
            started = time.time()
            result = subprocess.run(second, env=subprocess_env(), capture_output=True, text=True, timeout=60)
            seconds = time.time() - started
            assert result.returncode == 2, result.stderr[-2000:]
            message = _one_line(result.stderr)
            assert f"pid {first.pid}" in message and "in use" in message and str(run) in message
            assert seconds < 30, f"refused after {seconds:.1f} s"
        assert first.poll() is None  # the first job was left alone
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert RunLock(run).owner() == first.pid  # stale: a dead pid in the file
    with pytest.raises(ProcessLookupError):
        os.kill(first.pid, 0)
    after = subprocess.run(train("epochs=1"), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert after.returncode == 0, after.stderr[-2000:]
    assert (run / "summary.json").exists()
    assert RunLock(run).owner() is None  # released at normal exit


@pytest.mark.slow
def test_under_torchrun_every_rank_stops_when_the_folder_is_held(tmp_path):
    """Only rank 0 locks; the other ranks must stop with it rather than wait forever at a barrier."""
    run = tmp_path / "run"
    with RunLock(run):
        started = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "stgcma",
             "train", "--task", "ave", "--preset", "vit-test", "--data", "synthav:seed=0,n=8", "--out", str(run),
             "--quiet", "batch_size=4"], env=subprocess_env(), capture_output=True, text=True, timeout=240)
        seconds = time.time() - started
    assert result.returncode != 0
    assert result.stderr.count(f"error: run folder {run} is in use by another training job (pid {os.getpid()})") == 1
    # 9-14 s here; one run on the loaded 2-core machine took 94 s, so the bound only rules out a hang
    assert result.stderr.count("(see rank 0)") == 1 and seconds < 200, seconds
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]


# --------------------------------------------------------------------------- analyze with bad inputs


def _analyze(video: Path, out: Path, timeout: float = 120):
    # "--" ends the options, so a file name starting with "-" is a file name
    cmd = [sys.executable, "-m", "stgcma", "analyze", "--out", str(out), "--no-explain", "--quiet", "--", str(video)]
    started = time.time()
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, timeout=timeout)
    return result, time.time() - started


@pytest.mark.slow
def test_analyze_answers_every_bad_file_in_one_line(corpus, tmp_path):
    seconds = {}
    for video in sorted(corpus.iterdir()):
        result, seconds[video.name] = _analyze(video, tmp_path / "out", timeout=60)
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2, (video.name, stderr[-2000:])
        message = _one_line(stderr)
        assert message.startswith("error: ") and video.name in message, message
        assert not (tmp_path / "out" / "result.json").exists()
    assert max(seconds.values()) < 30, seconds  # refused before the models load (about 2 s each here)


@pytest.mark.slow
def test_a_good_clip_with_an_odd_name_still_analyses(tmp_path):
    video = tmp_path / "-my clip \u00e9 \U0001f3b5.mp4"
    shutil.copy(EXAMPLE, video)
    result, seconds = _analyze(video, tmp_path / "out")
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-2000:]
    report = json.loads((tmp_path / "out" / "result.json").read_text())
    assert report["ave"]["labels"] and Path(report["files"]["overlay"]).name == "overlay.mp4"
    assert "Traceback" not in result.stderr.decode("utf-8", "replace")


@pytest.mark.slow
def test_analyze_with_a_damaged_checkpoint_says_so_in_one_line(tmp_path, good):
    folder = tmp_path / "ckpt"
    shutil.copytree(good[0], folder)
    (folder / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes()[:500])
    cmd = [sys.executable, "-m", "stgcma", "analyze", str(EXAMPLE), "--out", str(tmp_path / "out"), "--checkpoint",
           str(folder), "--no-explain", "--quiet"]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    message = _one_line(result.stderr)
    assert message.startswith("error: ") and str(folder / WEIGHTS_NAME) in message and "hash" in message


# --------------------------------------------------------------------------- fuzzing the decoder


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("fuzz") / "small.mp4", size=(32, 24), fps=5, seconds=2.0).read_bytes()


mutations = st.tuples(
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=40),  # byte flips
    st.one_of(st.none(), st.floats(0.05, 1)),  # keep this fraction of the file
    st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64))),  # insert junk
)


@settings(max_examples=50, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations)
def test_mutated_mp4_decodes_or_raises_a_media_error(tmp_path, small_mp4, mutation):
    flips, keep, insert = mutation
    data = bytearray(small_mp4)
    for where, value in flips:
        data[int(where * len(data))] = value
    if insert is not None:
        at = int(insert[0] * len(data))
        data[at:at] = insert[1]
    if keep is not None:
        data = data[: max(1, int(keep * len(data)))]
    path = tmp_path / "fuzzed.mp4"
    path.write_bytes(bytes(data))

    def hung(*_):
        raise TimeoutError(f"decode_clip still running after 30 s on mutation {mutation}")

    previous = signal.signal(signal.SIGALRM, hung)  # a Python-level endless loop fails the test instead of hanging
    signal.alarm(30)
    try:
        clip = decode_clip(path, limits=MediaLimits(max_duration_s=20))
    except MediaError as err:
        _one_line(str(err))
        return
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert clip.frames.shape[0] == clip.num_segments >= 1
    assert clip.waveform.shape == (int(round(clip.duration * clip.sample_rate)),)


def test_a_full_disk_during_train_is_one_line_and_keeps_the_run(tmp_path, monkeypatch, capsys):
    from stgcma.cli import main as cli_main

    run = tmp_path / "run"
    args = ["train", "--task", "ave", "--preset", "vit-test", "--data", "synthav:seed=0,n=4", "--out", str(run),
            "--quiet", "epochs=1", "batch_size=2", "ood_clips=0"]
    monkeypatch.setattr(torch, "save", _disk_fills(torch.save))  # the training state cannot be written
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no space left on device") and "Traceback" not in err and "\n" not in err, err
    monkeypatch.undo()
    assert (run / "config.json").is_file()  # what was written before the disk filled is intact
    json.loads((run / "config.json").read_text())
