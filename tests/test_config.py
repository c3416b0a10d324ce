"""Config: JSON round trip, presets, typed overrides."""

import pytest

from stgcma.config import ConfigError, ModelConfig, apply_overrides, list_presets, load_preset

PAPER_PRESETS = ["clip-b16-tiny", "clip-b16-base", "clip-l14-tiny", "clip-l14-base",
                 "swin-b-tiny", "swin-b-base", "swin-l-tiny", "swin-l-large"]


def test_paper_presets_exist():
    assert set(PAPER_PRESETS) <= set(list_presets())


@pytest.mark.parametrize("name", list_presets())
def test_preset_json_round_trip(name):
    cfg = load_preset(name)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.name == name


def test_overrides_are_typed():
    cfg = apply_overrides(load_preset("vit-test"), ["adapter.ratio=0.5", "adapter.temporal=false",
                                                     "preprocess.num_segments=5", "backbone.pretrained=null"])
    assert cfg.adapter.ratio == 0.5 and cfg.adapter.temporal is False
    assert cfg.preprocess.num_segments == 5 and cfg.backbone.pretrained is None
    cfg = apply_overrides(cfg, {"adapter.ratio": [0.1, 0.2]})
    assert cfg.adapter.ratio == [0.1, 0.2]


@pytest.mark.parametrize("override, message", [
    ("adapter.ratoi=0.5", "ratoi"),
    ("nothing=1", "nothing"),
    ("adapter.temporal=maybe", "true/false"),
    ("preprocess.num_segments=2.5", "integer"),
    ("adapter.method=magic", "magic"),
    ("adapter", "key=value"),
    ("adapter=1", "section"),
])
def test_bad_override_says_what_was_expected(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_preset("vit-test"), [override])


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="clip-b16-tiny"):
        load_preset("clip-b99")


def test_from_dict_rejects_unknown_keys():
    data = load_preset("vit-test").to_dict()
    data["adapter"]["extra"] = 1
    with pytest.raises(ConfigError, match="extra"):
        ModelConfig.from_dict(data)
