"""Head refit on cached encoder features: the encoder stays as it was, the head trains, the result is a checkpoint."""

import csv
import dataclasses

import pytest
import torch
from conftest import save_task_checkpoints

from stgcma.checkpoint import load_model
from stgcma.cli import main
from stgcma.config import ConfigError
from stgcma.ood import load_world_stats
from stgcma.train.head_refit import FeatureCache, RefitConfig, refit_head


def _split(model):
    """(head tensors, the encoder's trained tensors): what a checkpoint stores (the trunk is not stored)."""
    state = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    return head, {k: v for k, v in state.items() if k.startswith("encoder.")}


def test_refit_trains_the_head_only_and_writes_a_loadable_checkpoint(tmp_path):
    source = save_task_checkpoints(tmp_path / "ckpt", data="synthav:seed=0,n=8", tasks=("avqa",)) / "avqa"
    assert main(["calibrate-ood", "--checkpoint", str(source), "--data", "synthav:seed=1,n=8", "--n", "8",
                 "--quiet"]) == 0
    before, _ = load_model(source)
    head0, enc0 = _split(before)
    cfg = RefitConfig(data="synthav:seed=0,n=8,questions=4", val_data="synthav:seed=1,n=4",
                      out=str(tmp_path / "refit"), epochs=2, batch_size=4, warmup_steps=1)
    summary = refit_head(source, cfg, progress=False)
    after, meta = load_model(tmp_path / "refit" / "best")
    head1, enc1 = _split(after)
    assert enc0 and head0
    for k in enc0:
        torch.testing.assert_close(enc1[k], enc0[k], msg=f"encoder tensor {k} changed")
    if summary["best_epoch"] > 0:
        assert any(not torch.equal(head0[k], head1[k]) for k in head0), "the selected head is the untrained one"
    stats0, stats1 = load_world_stats(source), load_world_stats(tmp_path / "refit" / "best")
    assert stats1 is not None, "the refit dropped the encoder's world statistics (new weights, old hash?)"
    assert stats1.thresholds == stats0.thresholds
    assert meta["refit"]["clips"] == 8 and meta["question_vocab"] == load_model(source)[1]["question_vocab"]
    rows = list(csv.DictReader(open(tmp_path / "refit" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and int(rows[-1]["steps"]) == 4
    assert float(rows[summary["best_epoch"]]["select"]) == max(float(r["select"]) for r in rows)


@pytest.mark.parametrize("head", [[], ["head.ave_count=true", "head.ave_audio=tokens"]], ids=["segment", "count"])
def test_feature_cache_gives_the_head_what_the_encoder_gives_it(tmp_path, head):
    """Both AVE heads read a few vectors per segment: the cache keeps those (TaskHead.summarize), no token
    (not even the tapped blocks' tokens that the encoder hands out: 0.2 MB a clip the head never reads)."""
    from stgcma.data.spec import build_dataset
    from stgcma.train.tasks import task_inputs

    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("ave",)) / "ave"
    model, _ = load_model(source, overrides=head or None, fresh_prefix="head." if head else None)
    model.eval()
    data = build_dataset("synthav:seed=0,n=3", "ave", "val", model.config.preprocess)
    cache = FeatureCache(model, data, "ave", 2, torch.device("cpu"))
    assert cache.video is None and cache.audio is None and cache.taps == [] and len(cache) == 3
    T, D = model.config.preprocess.num_segments, model.encoder.embed_dim
    widths = {"audio": 2 * D if head else D, "video": 3 * D if head else D}
    assert {k: tuple(v.shape) for k, v in cache.summary.items()} == {k: (3, T, w) for k, w in widths.items()}
    feats, batch = cache.batch(torch.tensor([2, 0]), torch.device("cpu"))
    with torch.no_grad():
        cached = model.forward_head(feats, **task_inputs("ave", batch))["logits"]
        items = [data[2], data[0]]
        direct = model(torch.stack([i["video"] for i in items]), torch.stack([i["audio"] for i in items]))["logits"]
    torch.testing.assert_close(cached, direct, atol=2e-2, rtol=2e-2)  # the cache holds half precision
    assert torch.equal(batch["label"], torch.stack([items[0]["label"], items[1]["label"]]))

    unlabelled = [{k: v for k, v in data[i].items() if k != "label"} for i in range(3)]
    with pytest.raises(ValueError, match="carry no label"):
        FeatureCache(model, unlabelled, "ave", 2, torch.device("cpu"))


def test_avs_cache_holds_the_tapped_blocks_and_a_refit_trains_the_decoder(tmp_path):
    from stgcma.data.spec import build_dataset

    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("avs",)) / "avs"
    model, _ = load_model(source)
    data = build_dataset("synthav:seed=0,n=3,mode=s4", "avs", "val", model.config.preprocess)
    cache = FeatureCache(model, data, "avs", 2, torch.device("cpu"))
    assert len(cache.taps) == len(model.head.taps) and model.head.last_block in model.head.taps
    stored = [x is not None for x in cache.taps]  # the last block's tap is read from the final tokens instead
    assert stored == [t != model.head.last_block for t in model.head.taps]
    feats, batch = cache.batch(torch.tensor([1, 2]), torch.device("cpu"))
    with torch.no_grad():
        cached = model.forward_head(feats)["logits"]
        items = [data[1], data[2]]
        direct = model(torch.stack([i["video"] for i in items]), torch.stack([i["audio"] for i in items]))["logits"]
    torch.testing.assert_close(cached, direct, atol=5e-2, rtol=5e-2)  # the cache holds half precision
    torch.testing.assert_close(batch["mask"], torch.stack([i["mask"] for i in items]), atol=1e-3, rtol=0)

    before, _ = load_model(source)
    head0, enc0 = _split(before)
    cfg = RefitConfig(data="synthav:seed=0,n=6,mode=s4", val_data="synthav:seed=1,n=3,mode=s4",
                      out=str(tmp_path / "refit"), epochs=2, batch_size=3, warmup_steps=1, dice_weight=1.0)
    summary = refit_head(source, cfg, progress=False)
    head1, enc1 = _split(load_model(tmp_path / "refit" / "best")[0])
    assert all(torch.equal(enc0[k], enc1[k]) for k in enc0), "an AVS refit must leave the encoder as it was"
    assert "miou" in summary["curve"][-1] and summary["curve"][-1]["steps"] == 4
    if summary["best_epoch"] > 0:
        assert any(not torch.equal(head0[k], head1[k]) for k in head0), "the selected decoder is the untrained one"


def test_an_avs_refit_can_add_the_detail_branch_and_caches_the_frames_it_reads(tmp_path):
    from stgcma.data.spec import build_dataset

    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("avs",)) / "avs"
    model, _ = load_model(source, overrides=["head.avs_detail=true"], fresh_prefix="head.")
    with torch.no_grad():
        model.head.detail.out.weight.normal_()  # not the neutral start, so the frames count
    data = build_dataset("synthav:seed=0,n=2,mode=s4", "avs", "val", model.config.preprocess)
    cache = FeatureCache(model, data, "avs", 2, torch.device("cpu"))
    T, S = cache.frames, model.config.preprocess.image_size
    assert cache.frames_in.shape == (2, T, 3, S, S) and cache.frames_in.dtype == torch.float16
    feats, _ = cache.batch(torch.tensor([0, 1]), torch.device("cpu"))
    with torch.no_grad():
        cached = model.forward_head(feats)["logits"]
        direct = model(torch.stack([data[0]["video"], data[1]["video"]]),
                       torch.stack([data[0]["audio"], data[1]["audio"]]))["logits"]
    torch.testing.assert_close(cached, direct, atol=5e-2, rtol=5e-2)  # the cache holds half precision
    cfg = RefitConfig(data="synthav:seed=0,n=4,mode=s4", val_data="synthav:seed=1,n=2,mode=s4",
                      out=str(tmp_path / "refit"), epochs=1, batch_size=2, warmup_steps=1,
                      head_overrides=["head.avs_detail=true"])
    summary = refit_head(source, cfg, progress=False)
    assert summary["fresh"] and all(k.startswith("head.detail.") for k in summary["fresh"])
    after, _ = load_model(tmp_path / "refit" / "best")
    assert after.config.head.avs_detail and after.head.detail is not None


def test_refit_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["refit", "--checkpoint", str(tmp_path / "missing"), "--data", "synthav:seed=0,n=4",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_refit_can_add_a_head_module_which_starts_fresh_and_is_saved(tmp_path):
    source = save_task_checkpoints(tmp_path / "ckpt", data="synthav:seed=0,n=8", tasks=("avqa",)) / "avqa"
    with pytest.raises(Exception, match="lacks trained tensors"):  # a plain load stays strict
        load_model(source, overrides=["head.avqa_readout=true"])
    cfg = RefitConfig(data="synthav:seed=0,n=8,questions=4", val_data="synthav:seed=1,n=4", out=str(tmp_path / "r"),
                      epochs=1, batch_size=4, warmup_steps=1, head_overrides=["head.avqa_readout=true"])
    summary = refit_head(source, cfg, progress=False)
    assert summary["fresh"] and all(k.startswith("head.readout.") for k in summary["fresh"])
    after, _ = load_model(tmp_path / "r" / "best")  # a plain load: the config carries the new module
    assert after.config.head.avqa_readout and after.head.readout is not None
    with pytest.raises(ConfigError, match="only the head"):
        RefitConfig(head_overrides=["adapter.ratio=0.5"]).check()


def test_refit_can_replace_the_ave_head_by_the_counting_head(tmp_path):
    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("ave",)) / "ave"
    with pytest.raises(Exception, match="tensors this model does not"):  # a plain load stays strict
        load_model(source, overrides=["head.ave_count=true"])
    cfg = RefitConfig(data="synthav:seed=0,n=4", val_data="synthav:seed=1,n=2", out=str(tmp_path / "r"),
                      epochs=1, batch_size=2, warmup_steps=1, head_overrides=["head.ave_count=true"])
    summary = refit_head(source, cfg, progress=False)
    assert summary["fresh"] and all(k.startswith(("head.hear.", "head.see.", "head.log_tau")) for k in summary["fresh"])
    after, _ = load_model(tmp_path / "r" / "best")
    assert after.config.head.ave_count and type(after.head).__name__ == "AVECountHead"
    assert not any(k.startswith("head.fc") for k in after.trainable_state_dict())


def test_question_readout_makes_the_answer_depend_on_the_audio():
    from stgcma.heads import QuestionReadout

    torch.manual_seed(0)
    readout = QuestionReadout(16)
    q, visual = torch.randn(2, 3, 16), torch.randn(2, 3, 5, 16)
    audio = torch.randn(2, 5, 16)
    out = readout(q, audio, visual)
    assert out.shape == (6, 16)
    assert not torch.allclose(out, readout(q, audio.flip(0), visual))
    assert not torch.allclose(out, readout(q.flip(1), audio, visual)), "the question must condition the read-out"


def test_order_readout_starts_neutral_and_then_tells_early_from_late():
    from stgcma.heads import QuestionReadout

    torch.manual_seed(0)
    plain, ordered = QuestionReadout(16), QuestionReadout(16, order=True)
    ordered.load_state_dict(plain.state_dict(), strict=False)  # a trained read-out gains the order branch
    q, audio, visual = torch.randn(2, 3, 16), torch.randn(2, 5, 16), torch.randn(2, 3, 5, 16)
    reversed_ = (q, audio.flip(1), visual.flip(2))
    torch.testing.assert_close(ordered(q, audio, visual), plain(q, audio, visual))  # zero-initialised branch
    torch.testing.assert_close(plain(*reversed_), plain(q, audio, visual))  # mean and max ignore the order
    torch.nn.init.normal_(ordered.order[1].weight)
    assert not torch.allclose(ordered(*reversed_), ordered(q, audio, visual), atol=1e-4)


def test_an_avqa_refit_can_add_the_layout_map_and_caches_the_targets_it_learns_from(tmp_path):
    """``--set head.avqa_layout_classes=K head.avqa_sound_levels=L``: the cache keeps per-patch layout
    targets (made once from SynthAV's class maps, not the pixel maps) and the sound levels beside the
    questions, the layout and sound losses train the new map, and validation reports how many object
    patches it names and how many sounding levels it hears right."""
    source = save_task_checkpoints(tmp_path / "ckpt", data="synthav:seed=0,n=8", tasks=("avqa",)) / "avqa"
    added = ["head.avqa_layout_classes=14", "head.avqa_sound_levels=3", "head.avqa_side_slots=true"]
    model, _ = load_model(source, overrides=added, fresh_prefix="head.")
    from stgcma.data.spec import build_dataset

    data = build_dataset("synthav:seed=0,n=4", "avqa", "train", model.config.preprocess)
    cache = FeatureCache(model, data, "avqa", 2, torch.device("cpu"))
    rows, cols = cache.grid_v
    target = cache.targets["layout_target"]
    assert target.shape == (4, cache.frames, rows, cols) and target.dtype == torch.uint8 and int(target.max()) > 0
    assert "class_map" not in cache.targets
    assert cache.targets["sound_level"].shape == (4, cache.frames, 14) and int(cache.targets["sound_level"].max()) > 0
    assert cache.targets["side_class"].shape == (4, 3) and int(cache.targets["side_class"].max()) >= 0
    plain, _ = load_model(source)
    kept = FeatureCache(plain, data, "avqa", 2, torch.device("cpu")).targets
    assert not {"layout_target", "sound_level", "side_class", "class_map"} & set(kept)  # not read: not kept

    cfg = RefitConfig(data="synthav:seed=0,n=8,questions=2", val_data="synthav:seed=1,n=4", out=str(tmp_path / "r"),
                      epochs=2, batch_size=4, warmup_steps=1, head_overrides=added)
    with pytest.raises(ConfigError, match="14 object classes, the head's layout map 8"):
        refit_head(source, dataclasses.replace(cfg, head_overrides=["head.avqa_layout_classes=8"]), progress=False)
    with pytest.raises(ConfigError, match="3 loudness levels, the head hears 2"):
        refit_head(source, dataclasses.replace(cfg, head_overrides=[added[0], "head.avqa_sound_levels=2"]),
                   progress=False)
    summary = refit_head(source, cfg, progress=False)
    assert all(k.startswith("head.layout.") for k in summary["fresh"])
    assert all(0.0 <= row["layout_object_accuracy"] <= 1.0 for row in summary["curve"])
    assert all(0.0 <= row["sound_level_accuracy"] <= 1.0 for row in summary["curve"])
    assert all(0.0 <= row["side_accuracy"] <= 1.0 for row in summary["curve"])
    after, _ = load_model(tmp_path / "r" / "best")
    assert after.config.head.avqa_layout_classes == 14 and after.head.layout.levels == 3 and after.head.layout.sides


def test_an_avqa_refit_adding_a_head_option_reads_the_cached_tokens(tmp_path, monkeypatch):
    """An AVQA head reads the encoder's final tokens whatever its options, so a refit that adds one
    (``head.avqa_layout_refine``) reads the tokens a refit without it cached; a head with another layout
    map misses, since its cache keeps other targets."""
    import stgcma.train.head_refit as head_refit

    source = save_task_checkpoints(tmp_path / "ckpt", data="synthav:seed=0,n=8", tasks=("avqa",)) / "avqa"
    layout = ["head.avqa_layout_classes=14", "head.avqa_sound_levels=3"]
    cfg = RefitConfig(data="synthav:seed=0,n=4,questions=2", val_data="synthav:seed=1,n=2", out=str(tmp_path / "r1"),
                      epochs=1, batch_size=2, warmup_steps=1, cache_dir=str(tmp_path / "cache"), head_overrides=layout)
    torch.manual_seed(0)
    refit_head(source, cfg, progress=False)
    mapped = tmp_path / "r1" / "best"
    with monkeypatch.context() as m:
        m.setattr(head_refit.FeatureCache, "__init__", lambda *a, **k: pytest.fail("encoded again"))
        torch.manual_seed(0)
        first = refit_head(mapped, dataclasses.replace(cfg, out=str(tmp_path / "r2"), head_overrides=[]),
                           progress=False)
        torch.manual_seed(0)
        refined = refit_head(mapped, dataclasses.replace(cfg, out=str(tmp_path / "r3"),
                                                         head_overrides=["head.avqa_layout_refine=true"]),
                             progress=False)
    assert refined["fresh"] and all(k.startswith("head.layout.refine.") for k in refined["fresh"])
    assert refined["curve"][0]["select"] == first["curve"][0]["select"]  # zero-initialised: the same answers
    torch.manual_seed(0)
    refit_head(mapped, dataclasses.replace(cfg, out=str(tmp_path / "r4"), head_overrides=["head.avqa_side_slots=true"]),
               progress=False)
    assert len(list((tmp_path / "cache").iterdir())) == 4  # side targets kept too: both datasets encoded again


def test_feature_rows_fill_one_preallocated_tensor():
    """The cache writes each stream into one (N, ...) tensor (no chunk list to fragment the heap), in the
    dtype it asks for; a stream never added stays None."""
    from stgcma.train.head_refit import _Rows

    rows = _Rows(5, torch.half)
    rows.add(torch.ones(2, 3))
    rows.add(torch.full((2, 3), 2.0))
    out = rows.tensor()
    assert out.dtype == torch.half and out.shape == (4, 3)
    assert out[:2].eq(1).all() and out[2:].eq(2).all()
    assert rows.data.data_ptr() == out.data_ptr(), "the rows were copied, not written in place"
    assert _Rows(3).tensor() is None


def _same_cache(a, b):
    """Two FeatureCaches hold the same tensors, targets, grids and question types."""
    assert (a.task, a.frames, len(a), a.grid_v, a.grid_a, a.tap_grids, a.qtypes) == \
        (b.task, b.frames, len(b), b.grid_v, b.grid_a, b.tap_grids, b.qtypes)
    pairs = [(a.summary, b.summary), (a.targets, b.targets)]
    for x, y in pairs:
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    for name in ("video", "audio", "frames_in"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.equal(x, y), name
    assert [t is None for t in a.taps] == [t is None for t in b.taps]
    assert all(x is None or torch.equal(x, y) for x, y in zip(a.taps, b.taps, strict=True))


@pytest.mark.parametrize("task,spec,head", [
    ("ave", "synthav:seed=0,n=3", ["head.ave_count=true", "head.ave_audio=tokens"]),
    ("avs", "synthav:seed=0,n=3,mode=s4", ["head.avs_detail=true"]),
    ("avqa", "synthav:seed=0,n=3,questions=2", []),
], ids=["ave-summary", "avs-taps", "avqa-tokens"])
def test_a_saved_feature_cache_loads_back_unchanged(tmp_path, task, spec, head):
    from stgcma.data.spec import build_dataset

    source = save_task_checkpoints(tmp_path / "ckpt", data="synthav:seed=0,n=8", tasks=(task,)) / task
    model, meta = load_model(source, overrides=head or None, fresh_prefix="head." if head else None)
    extra = {}
    if task == "avqa":
        from stgcma.data.vocab import Vocab

        extra["question_vocab"] = Vocab(meta["question_vocab"], meta["question_max_len"])
    data = build_dataset(spec, task, "train", model.config.preprocess, **extra)
    cache = FeatureCache(model, data, task, 2, torch.device("cpu"))
    cache.save(tmp_path / "c" / "x.safetensors")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["x.safetensors"]  # no partial file left behind
    loaded = FeatureCache.load(tmp_path / "c" / "x.safetensors")
    _same_cache(cache, loaded)
    index = torch.tensor([2, 0])
    (f0, b0), (f1, b1) = cache.batch(index, torch.device("cpu")), loaded.batch(index, torch.device("cpu"))
    with torch.no_grad():
        from stgcma.train.tasks import task_inputs

        torch.testing.assert_close(model.forward_head(f1, **task_inputs(task, b1))["logits"],
                                   model.forward_head(f0, **task_inputs(task, b0))["logits"], atol=0, rtol=0)


def test_a_second_refit_on_the_same_clips_reads_the_cache_instead_of_encoding(tmp_path, monkeypatch):
    """``--cache DIR``: the first refit encodes and saves each dataset, a second one with other training
    settings reads them back (encoding is refused here), and other clips or another checkpoint miss."""
    import stgcma.train.head_refit as head_refit

    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("ave",)) / "ave"
    cfg = RefitConfig(data="synthav:seed=0,n=4", val_data="synthav:seed=1,n=2", out=str(tmp_path / "r1"), epochs=1,
                      batch_size=2, warmup_steps=1, cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)  # the test preset's trunk has no stored weights: each load draws it from the generator
    first = refit_head(source, cfg, progress=False)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and files[0].startswith("ave-train-") and files[1].startswith("ave-val-")

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again although the cache holds these clips")

    with monkeypatch.context() as m:
        m.setattr(head_refit.FeatureCache, "__init__", no_encoding)
        torch.manual_seed(0)
        second = refit_head(source, dataclasses.replace(cfg, out=str(tmp_path / "r2"), lr=1e-4), progress=False)
    assert second["curve"][0]["select"] == first["curve"][0]["select"]  # the same untrained head, the same clips
    torch.manual_seed(0)
    refit_head(source, dataclasses.replace(cfg, out=str(tmp_path / "r3"), data="synthav:seed=5,n=4"), progress=False)
    assert len(list((tmp_path / "cache").iterdir())) == 3  # new training clips: one new file, val reused
    from stgcma.checkpoint import save_checkpoint

    model, meta = load_model(source)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad).add_(0.1)
    other = save_checkpoint(model, tmp_path / "other", meta)
    torch.manual_seed(0)
    refit_head(other, dataclasses.replace(cfg, out=str(tmp_path / "r4")), progress=False)
    assert len(list((tmp_path / "cache").iterdir())) == 5  # another encoder: both datasets encoded again


def test_weight_averaging_keeps_the_mean_head_only_when_it_scores_higher(tmp_path):
    from stgcma.train.head_refit import _mean_state

    a, b = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(2)}, {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(7)}
    mean = _mean_state([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and int(mean["n"]) == 7
    with pytest.raises(ConfigError, match="average_last"):
        RefitConfig(epochs=2, average_last=3).check()

    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("ave",)) / "ave"
    cfg = RefitConfig(data="synthav:seed=0,n=4", val_data="synthav:seed=1,n=2", out=str(tmp_path / "r"), epochs=3,
                      batch_size=2, warmup_steps=1, average_last=2)
    summary = refit_head(source, cfg, progress=False)
    averaged = summary["averaged"]
    assert averaged["epochs"] == [2, 3] and 0.0 <= averaged["select"] <= 1.0
    best_single = max(r["select"] for r in summary["curve"])
    assert summary["val_select"] == max(best_single, averaged["select"])
    assert summary["weights"] == ("mean of epochs 2-3" if averaged["select"] > best_single
                                  else f"epoch {summary['best_epoch']}")


def test_segment_context_starts_as_the_identity_and_then_reads_the_neighbours():
    from stgcma.heads import SegmentContext

    torch.manual_seed(0)
    context, x = SegmentContext(4), torch.randn(2, 5, 4)
    torch.testing.assert_close(context(x), x)  # zero-initialised: a trained head gains it unchanged
    torch.nn.init.normal_(context.local.weight)
    y = context(x)
    shifted = x.clone()
    shifted[:, 4] += 1.0  # the last second only
    moved = (context(shifted) - y).abs().sum(-1)[0]  # (T,)
    assert moved[3] > 0 and moved[4] > 0 and torch.all(moved[:3] == 0), "width 3: the neighbour moves, no other"
    torch.nn.init.normal_(context.clip.weight)
    moved = (context(shifted) - context(x)).abs().sum(-1)[0]
    assert torch.all(moved > 0), "the clip's mean reaches every second"


def test_a_counting_head_refit_can_add_segment_context_and_reuses_the_cached_features(tmp_path, monkeypatch):
    """``--set head.ave_context=true`` changes what the head does with its summary, not the summary: a refit
    with it reads the features a refit without it cached, and starts from the same validation score."""
    import stgcma.train.head_refit as head_refit
    from stgcma.checkpoint import CheckpointError

    source = save_task_checkpoints(tmp_path / "ckpt", tasks=("ave",)) / "ave"
    with pytest.raises(CheckpointError, match="head.ave_count=true too"):
        load_model(source, overrides=["head.ave_context=true"], fresh_prefix="head.")
    cfg = RefitConfig(data="synthav:seed=0,n=4", val_data="synthav:seed=1,n=2", out=str(tmp_path / "r1"), epochs=1,
                      batch_size=2, warmup_steps=1, cache_dir=str(tmp_path / "cache"),
                      head_overrides=["head.ave_count=true"])
    torch.manual_seed(0)
    refit_head(source, cfg, progress=False)
    counted = tmp_path / "r1" / "best"
    monkeypatch.setattr(head_refit.FeatureCache, "__init__", lambda *a, **k: pytest.fail("encoded again"))
    torch.manual_seed(0)
    first = refit_head(counted, dataclasses.replace(cfg, out=str(tmp_path / "r2"), head_overrides=[]), progress=False)
    torch.manual_seed(0)
    summary = refit_head(counted, dataclasses.replace(cfg, out=str(tmp_path / "r3"),
                                                      head_overrides=["head.ave_context=true"]), progress=False)
    assert summary["fresh"] and all(k.startswith(("head.hear_context.", "head.see_context.")) for k in summary["fresh"])
    assert summary["curve"][0]["select"] == first["curve"][0]["select"]  # zero-initialised context: the same head
    after, _ = load_model(tmp_path / "r3" / "best")
    assert after.config.head.ave_context and after.head.hear_context is not None
