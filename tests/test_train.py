"""Training: run folder contents, DDP (2 gloo processes) == 1 process, SIGKILL + resume == uninterrupted."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stgcma.config import PreprocessConfig
from stgcma.data.spec import build_dataset
from stgcma.model import create_model
from stgcma.train import TrainConfig, fit
from stgcma.train.distributed import GlobalBatchSampler
from stgcma.train.loop import cosine_with_warmup
from tests.conftest import subprocess_env

# Dropout and DropPath off: their random streams differ between 1 and 2 processes.
DETERMINISTIC = ["head.dropout=0.0", "adapter.drop_path=0.0"]



def _train_cmd(out, data="synthav:seed=0,n=8", extra=()):
    return ["-m", "stgcma", "train", "--task", "ave", "--preset", "vit-test", "--data", data, "--out", str(out),
            "--quiet", "lr=0.003", "warmup_epochs=0", *extra, *DETERMINISTIC]


def _losses(run):
    with open(Path(run) / "steps.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_global_batch_sampler_splits_the_same_global_batches():
    single = list(GlobalBatchSampler(10, 4, seed=1))
    ranks = [list(GlobalBatchSampler(10, 4, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(single) == 2
    for b, batch in enumerate(single):
        assert ranks[0][b] + ranks[1][b] == batch
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(10, 3, seed=0, world_size=2)


def test_cosine_schedule():
    assert cosine_with_warmup(0, 4, 20) == pytest.approx(0.25)
    assert cosine_with_warmup(3, 4, 20) == pytest.approx(1.0)
    assert cosine_with_warmup(12, 4, 20) == pytest.approx(0.5)
    assert cosine_with_warmup(20, 4, 20) == pytest.approx(0.0)
    assert cosine_with_warmup(20, 4, 20, floor=0.1) == pytest.approx(0.1)
    assert cosine_with_warmup(12, 4, 20, floor=0.1) == pytest.approx(0.55)


def test_fit_writes_a_complete_run_folder(tmp_path):
    cfg = TrainConfig(task="ave", preset="vit-test", data="synthav:seed=0,n=8", out=str(tmp_path / "run"),
                      epochs=2, batch_size=4, accum_steps=2, avg_from=1)
    summary = fit(cfg, ["adapter.ratio=0.125"], progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "steps.csv", "state.pt", "summary.json"):
        assert (run / name).exists(), name
    for ckpt in ("best", "last", "averaged"):
        assert (run / ckpt / "adapter_model.safetensors").exists()
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 5e-5 and config["model"]["adapter"]["ratio"] == 0.125
    assert config["model"]["head"]["num_classes"] == 15  # the default SynthAV world's 14 classes + background
    assert summary["selected"] in ("best", "averaged")
    from stgcma.checkpoint import load_model

    model, meta = load_model(run)  # a finished run folder stands for its selected checkpoint
    assert meta["source"] == str(run / summary["selected"]) and model.config.adapter.ratio == 0.125


def test_compiled_training_takes_the_eager_steps(tmp_path):
    """``compile=true`` runs the training forward and backward through torch.compile: the same losses and
    the same trained weights as eager training (randomness off: compiled code draws its own numbers)."""
    from torch._dynamo.utils import counters

    runs, graphs = {}, {}
    for compiled in (False, True):
        counters.clear()
        cfg = TrainConfig(task="ave", preset="vit-test", data="synthav:seed=0,n=8", out=str(tmp_path / str(compiled)),
                          epochs=1, batch_size=4, lr=0.003, warmup_epochs=0, ood_clips=0, compile=compiled)
        fit(cfg, DETERMINISTIC, progress=False)
        runs[compiled], graphs[compiled] = tmp_path / str(compiled), counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    assert graphs[False] == 0 and graphs[True] >= 1  # compiled, and only when asked
    eager, compiled = _losses(runs[False]), _losses(runs[True])
    assert len(eager) == len(compiled) == 2
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert json.loads((runs[True] / "config.json").read_text())["train"]["compile"] is True
    weights = [load_file(runs[c] / "last" / "adapter_model.safetensors") for c in (False, True)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[1][key], weights[0][key], atol=1e-5, rtol=1e-4)


def test_avqa_trains_on_several_questions_per_clip_and_validates_on_one(tmp_path):
    from stgcma.train.loop import _collate
    from stgcma.train.tasks import Evaluator, TaskLoss

    cfg = TrainConfig(task="avqa", preset="vit-test", data="synthav:seed=0,n=8,questions=3",
                      val_data="synthav:seed=0,n=4", out=str(tmp_path / "run"), epochs=1, batch_size=4)
    fit(cfg, [], progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_select"]) <= 1.0

    model = create_model("vit-test", ["head.task=avqa", "head.dropout=0.0", "adapter.drop_path=0.0"]).eval()
    data = build_dataset("synthav:seed=0,n=2,questions=3", "avqa", "train", model.config.preprocess)
    batch = _collate("avqa")([data[0], data[1]])
    with torch.no_grad():
        loss, logits = TaskLoss(model, "avqa", match_weight=0.0)(batch)
        single = [model(batch["video"], batch["audio"], question=batch["question"][:, k])["logits"] for k in range(3)]
    assert logits.shape == (2, 3, 42)
    per_question = [torch.nn.functional.cross_entropy(single[k], batch["answer"][:, k]) for k in range(3)]
    torch.testing.assert_close(loss, torch.stack(per_question).mean(), atol=1e-5, rtol=1e-5)
    ev = Evaluator("avqa")
    ev.update(logits, batch)
    metrics = ev.compute()
    hits = (logits.argmax(-1) == batch["answer"]).float().mean()
    assert metrics["accuracy"] == pytest.approx(float(hits))


def test_ave_evaluation_follows_the_models_decode_mode():
    """``evaluate`` scores AVE with the checkpoint's ``head.ave_decode``: clip decoding fixes a stray second."""
    from stgcma.train.loop import evaluate

    data = build_dataset("synthav:seed=0,n=1,world=shapes,classes=4", "ave", "test", PreprocessConfig(image_size=32))
    classes = len(data.class_names)  # 4 events + background
    model = create_model("vit-test", ["head.task=ave", f"head.num_classes={classes}"])
    label = data[0]["label"]
    background = classes - 1
    event = int(label[label != background][0])
    wrong = (event + 1) % background
    forced = torch.full((1, len(label), classes), -5.0)  # (B, T, C): the right labels, one event second off
    forced[0, torch.arange(len(label)), label] = 5.0
    second = int((label != background).nonzero()[0])
    forced[0, second, wrong], forced[0, second, event] = 5.0, 4.0

    class Fixed(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config, self.p = config, torch.nn.Parameter(torch.zeros(()))

        def forward(self, video, audio, **_):
            return {"logits": forced.expand(video.shape[0], -1, -1) + self.p}

    fixed = Fixed(model.config)
    segments = len(label)
    for mode, right in (("segment", segments - 1), ("clip", segments)):
        fixed.config.head.ave_decode = mode
        assert evaluate(fixed, [data[0]], "ave")["accuracy"] == pytest.approx(right / segments)


def test_ddp_two_processes_match_one_process(tmp_path):
    single = subprocess.run([sys.executable, *_train_cmd(tmp_path / "one", extra=["epochs=2", "batch_size=4"])],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *_train_cmd(tmp_path / "two", extra=["epochs=2", "batch_size=4"])],
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    # Tolerance: float32 sums in a different order (per-rank means, then all-reduce): 1e-5 relative.
    assert one == pytest.approx(two, rel=1e-5)
    w1 = load_file(str(tmp_path / "one" / "last" / "adapter_model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "last" / "adapter_model.safetensors"))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-4)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    extra = ["epochs=3", "batch_size=2", "seed=5"]
    data = "synthav:seed=1,n=48"
    full = subprocess.run([sys.executable, *_train_cmd(tmp_path / "full", data, extra)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *_train_cmd(run, data, extra)], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").exists() and len((run / "metrics.csv").read_text().splitlines()) >= 2:
            time.sleep(0.1)  # into epoch 2 (about a second long)
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "stgcma", "train", "--resume", str(run), "--quiet"],
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(tmp_path / "full" / "last" / "adapter_model.safetensors"))
    b = load_file(str(run / "last" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    epochs = [r["epoch"] for r in csv.DictReader(open(run / "metrics.csv"))]
    assert epochs == ["1", "2", "3"]


def test_resume_needs_a_run_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stgcma", "train", "--resume", str(tmp_path)], env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "config.json" in result.stderr


def test_recalibrate_batchnorm_matches_data_statistics():
    from stgcma.train.calibrate import recalibrate_batchnorm

    bn = torch.nn.BatchNorm1d(3)
    model = torch.nn.Sequential(torch.nn.Identity(), bn)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, video, audio):
            return {"logits": self.net(video.flatten(1)[:, :3])}

    data = [{"video": torch.randn(1, 3) * 2 + 1, "audio": torch.zeros(1), "id": str(i), "label": torch.zeros(1)}
            for i in range(16)]
    used = recalibrate_batchnorm(Wrapper(), data, "ave", batch_size=4)
    values = torch.stack([d["video"].flatten()[:3] for d in data])
    assert used == 4 and not bn.training
    torch.testing.assert_close(bn.running_mean, values.mean(0))
    assert bn.momentum == 0.1


def test_fresh_synthav_draws_new_clips_every_epoch():
    data = build_dataset("synthav:seed=0,n=4,fresh=1", "ave", "train", PreprocessConfig(image_size=32))
    sampler = GlobalBatchSampler(len(data), 2, seed=0, offset=data.epoch_offset)
    seen = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        seen.append(sorted(i for batch in sampler for i in batch))
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert data[5]["id"] != data[1]["id"]  # index 5 is a clip of its own, not clip 1 again
    fixed = build_dataset("synthav:seed=0,n=4", "ave", "train", PreprocessConfig(image_size=32))
    with pytest.raises(IndexError):
        fixed[4]


@pytest.mark.slow
def test_study_runs_every_seed_and_reports_mean_and_std(tmp_path):
    from stgcma.checkpoint import DEFAULT_DIR
    from stgcma.train.study import StudyBudget, markdown_table, run_study

    if not (DEFAULT_DIR / "backbone" / "model.safetensors").exists():
        pytest.skip("no embedded default backbone")
    budget = StudyBudget(n_train=8, n_val=8, n_test=8, epochs=1, seeds=2)
    only = ["stgcma-tiny (T+S+G)", "linear-probe", "full-finetune"]
    results = run_study(tmp_path / "study", ("ave",), budget, only=only)
    full = json.loads((tmp_path / "study" / "ave" / "full-finetune" / "seed0" / "config.json").read_text())["train"]
    assert full["lr"] == budget.full_finetune_lr and full["lr"] * full["head_lr_scale"] == pytest.approx(budget.lr)
    for name in only:
        row = results["ave"][name]
        assert [r["seed"] for r in row["runs"]] == [0, 1] and row["n"] == 2
        assert row["mean"] == pytest.approx(sum(r["test"] for r in row["runs"]) / 2)
    assert results["ave"]["linear-probe"]["trainable"] < results["ave"]["stgcma-tiny (T+S+G)"]["trainable"]
    assert "+- " in markdown_table(results) and (tmp_path / "study" / "study.md").exists()
    again = run_study(tmp_path / "study", ("ave",), budget, only=only)  # resumes: nothing left to run
    assert again["ave"]["linear-probe"]["runs"] == results["ave"]["linear-probe"]["runs"]


def test_study_table_orders_the_stage_ablation_once_all_seven_have_run():
    from stgcma.train.study import ablation_order, markdown_table

    names = ["stgcma-base (T+S+G)", "ablation T", "ablation S", "ablation G", "ablation T+S", "ablation T+G",
             "ablation S+G"]
    rows = {n: {"runs": [{"seed": 0, "test": 0.1 * i, "seconds": 60.0}], "mean": 0.1 * i, "std": 0.0, "n": 1,
                "trainable": 1000} for i, n in enumerate(names)}
    assert ablation_order(rows).startswith("S+G 0.600 > T+G 0.500 > T+S 0.400") and ablation_order(rows).endswith(
        "T+S+G 0.000")
    assert "| ablation T | 0.001M | 0.100 +- 0.000 (n=1) | +0.100 +- 0.000 |" in markdown_table({"avs": rows})
    assert "paper: T+S+G 81.8" in markdown_table({"avs": rows}) and "avs 7.0 min over 7 runs" in markdown_table(
        {"avs": rows})
    del rows["ablation G"]
    assert ablation_order(rows) == "" and "paper" not in markdown_table({"avs": rows})
