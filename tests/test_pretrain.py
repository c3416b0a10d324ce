"""Image-only pretraining of the default's tower: its targets and its held-out score."""

import torch

from stgcma.config import PreprocessConfig
from stgcma.train.pretrain import MIN_VISIBLE_PIXELS, SynthFrames, patch_targets, present_classes


def test_presence_counts_small_objects_that_no_patch_majority_sees():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, :4, :MIN_VISIBLE_PIXELS // 4] = 3  # class 2: exactly the minimum number of pixels
    labels[0, 20, :MIN_VISIBLE_PIXELS - 1] = 1  # class 0: one pixel short
    present = present_classes(labels, classes=4)
    assert present.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert patch_targets(labels, 16, 4).max() == 0  # every 16-px patch is mostly background


def test_frames_of_different_seeds_differ_and_label_their_objects():
    pre = PreprocessConfig(image_size=48)
    a, b = SynthFrames(5, 2, pre), SynthFrames(6, 2, pre)
    (img_a, lab_a), (img_b, _) = a[0], b[0]
    assert img_a.shape == (3, 48, 48) and lab_a.shape == (48, 48)
    assert not torch.equal(img_a, img_b)  # each pretraining epoch draws new clips (seed + epoch)
    assert int(lab_a.max()) <= a.classes and present_classes(lab_a[None], a.classes).sum() >= 1


def test_build_default_takes_the_pretraining_length_from_the_command_line(capsys):
    import argparse

    from stgcma.cli import main
    from stgcma.cli.build_default import add_arguments, recipe_of
    from stgcma.train.default import DefaultRecipe

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    longer = recipe_of(parser.parse_args(["--pretrain-epochs", "16"]))
    assert longer.pretrain_epochs == 16 and longer.pretrain_clips == DefaultRecipe().pretrain_clips
    assert longer.tasks == DefaultRecipe().tasks  # only the pretraining changes
    assert recipe_of(parser.parse_args([])).pretrain_epochs == DefaultRecipe().pretrain_epochs
    assert recipe_of(parser.parse_args(["--recipe", "cpu-long"])).pretrain_epochs == 2 * DefaultRecipe().pretrain_epochs
    scaled = recipe_of(parser.parse_args(["--scale", "0.01", "--pretrain-epochs", "3"]))
    assert scaled.pretrain_epochs == 3 and scaled.pretrain_clips < DefaultRecipe().pretrain_clips
    assert main(["build-default", "--pretrain-epochs", "0", "--out", "/nonexistent/never-written"]) == 2
    assert "--pretrain-epochs must be at least 1" in capsys.readouterr().err
    assert main(["build-default", "--pretrain-epochs", "16", "--skip-pretrain", "--out", "/nonexistent/x"]) == 2
    assert "leave out" in capsys.readouterr().err
