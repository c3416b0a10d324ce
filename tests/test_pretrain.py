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
