"""Typed configuration for STG-CMA models (Wang, Tian, Hatzinakos, CVPR-W 2024, arXiv 2403.01862).

Everything that decides how a model is built or how its inputs are prepared lives here as a
dataclass. Configs round-trip through JSON (named presets are JSON files in ``stgcma/presets``;
checkpoints carry their config), and ``apply_overrides`` takes typed ``key=value`` strings that
reject unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Method = Literal["stgcma", "lavish", "linear_probe", "full_finetune"]
Task = Literal["ave", "avs", "avqa"]
AVEDecode = Literal["segment", "clip"]
AudioPool = Literal["cls", "tokens"]


class ConfigError(ValueError):
    """A configuration value or override is invalid; the message says what was expected."""


@dataclass
class PreprocessConfig:
    """How a clip becomes model inputs; stored with every checkpoint so data cannot drift.

    A clip is cut into ``num_segments`` one-second segments. Per segment the model sees one RGB
    frame of ``image_size`` pixels and a kaldi log-mel fbank of ``target_frames`` x ``num_mel_bins``
    (time x frequency), normalised as ``(fbank - fbank_mean) / (2 * fbank_std)``.
    """

    image_size: int = 224
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    target_frames: int = 102
    fbank_mean: float = -4.1426
    fbank_std: float = 3.2001
    segment_seconds: float = 1.0
    num_segments: int = 10

    @property
    def audio_shape(self) -> tuple[int, int]:
        """(time frames, mel bins) of one segment's fbank image."""
        return (self.target_frames, self.num_mel_bins)


@dataclass
class BackboneConfig:
    """Which frozen image transformer is shared by both streams.

    ``name`` is a key of ``stgcma.backbones.BACKBONES``. ``pretrained`` is ``None`` (random init,
    always offline), a source tag (``"openai"`` for CLIP, ``"in22k"`` for Swin) or a local file or
    folder with the weights in the source library's format.
    """

    name: str = "vit-test"
    pretrained: str | None = None
    frozen_attn_heads: int | None = None


@dataclass
class AdapterConfig:
    """The trainable part on top of the frozen backbone.

    ``method`` picks STG-CMA or one of its baselines. ``ratio`` is the adapter bottleneck ratio
    (h = int(D * r)); Swin takes one ratio per stage. ``temporal``/``spatial``/``global_`` switch
    the three STG-CMA stages.
    """

    method: Method = "stgcma"
    ratio: float | list[float] = 0.03125
    temporal: bool = True
    spatial: bool = True
    global_: bool = True
    drop_path: float = 0.2
    lavish_tokens: int = 2


@dataclass
class HeadConfig:
    """Task head settings (sizes follow METHOD.md)."""

    task: Task = "ave"
    num_classes: int = 29
    hidden: int = 512
    dropout: float = 0.5
    avs_channels: int = 256
    avs_audio_dim: int = 128
    avs_mask_width: int = 128  # the AVS output convs' middle width (AVSBench: 128; heads.MaskOutput)
    avqa_answers: int = 42
    avqa_vocab_size: int = 100
    avqa_max_len: int = 14
    avqa_embed: int = 512
    # AVE head's audio vector: "cls" (the paper's) or "tokens" ([mean, max] of the audio patch tokens;
    # an image backbone's audio CLS barely varies between segments, see heads.pooled_audio)
    ave_audio: AudioPool = "cls"
    # how AVE logits become labels: "segment" (each segment's argmax, the paper's) or "clip" (one event
    # class per clip of num_segments segments, then event or background per segment; heads.decode_ave)
    ave_decode: AVEDecode = "segment"
    # AVE: a counting head. Per segment, how likely each class is heard (from the audio vector) and seen
    # (from the video's class token and pooled patch tokens); the clip's class follows how many seconds
    # each class is both, so a class heard and seen for a while loses to the one heard and seen longest
    # (heads.AVECountHead). The per-segment head cannot tell them apart: it sees one second at a time
    ave_count: bool = False
    # AVE counting head: each second's heard and seen logits also read their neighbours' and the clip's mean
    # (a width-3 convolution over the segments and a map of the mean, zero-initialised; heads.SegmentContext)
    ave_context: bool = False
    # AVS: add an audio-visual match map (last-block patch tokens . audio) to the mask logits, so a
    # silent object can be pushed below an equally object-like sounding one (heads.AVSMatch)
    avs_match: bool = False
    # AVS: a detail branch on the input frames (a ViTMatte-style conv stream at full and half resolution)
    # that corrects the mask logits where the patch tokens are too coarse: SynthAV's sounding objects
    # cover a median 2% of a 112-px frame, one or two 16-px patches (heads.DetailRefiner)
    avs_detail: bool = False
    # AVQA: a question-conditioned read-out beside the reasoner: per segment, projected audio and
    # question-grounded visual vectors multiplied by projections of the question, pooled over time
    # [mean, max] and added to the fused vector (heads.QuestionReadout)
    avqa_readout: bool = False
    # AVQA read-out: also time-weighted sums of those segment products (early minus late evidence), so
    # the read-out is not blind to the segment order (heads.QuestionReadout, order=True)
    avqa_readout_order: bool = False
    # AVQA: one token per column of the patch grid (pooled over rows and time, with where the audio-guided
    # grounding put the sound) beside the segment vectors, so the reasoner has an input that says what
    # stands where: "what is on the left of the <Object>?", "where is the loudest object?" (heads.ColumnTokens)
    avqa_columns: bool = False
    # AVQA: a per-patch question read-out (each patch token times a projection of the question), max-pooled
    # over the frame and per column, whose profile over the columns lets "how many <Object>s?" count
    # places; added to the fused vector (heads.PatchReadout)
    avqa_patch_readout: bool = False
    # AVQA: K > 0 adds a per-patch class map over K object classes, supervised by SynthAV's class maps
    # (train.layout_weight), that the question reads: where the named object stands, which class stands
    # where (heads.LayoutReadout); 0: off (real datasets carry no class maps)
    avqa_layout_classes: int = 0
    # AVQA with a layout map: L > 0 also hears, per segment, how loud each of the K classes sounds (silent
    # or one of L levels), supervised by SynthAV's sources (item ``sound_level``, L = 3), and reads each
    # class's loudness and duration with the question: "is the object on the left louder than the object
    # on the right?", "where is the loudest object?" (heads.LayoutReadout); 0: off
    avqa_sound_levels: int = 0
    # AVQA with heard loudness: read the layout map as MUSIC-AVQA's sides (a side is a rank among the
    # objects) and compare the sides' loudness and duration (heads.LayoutReadout.side_slots); which class
    # stands at which side is supervised by SynthAV's scenes (item ``side_class``, train.layout_weight)
    avqa_side_slots: bool = False
    # AVQA with a layout map: name each patch's class also from its mean over the clip and its 3 x 3
    # neighbourhood (an MLP whose logits add to the map's Linear, zero-initialised; heads.LayoutRefine)
    avqa_layout_refine: bool = False


@dataclass
class ModelConfig:
    """A whole STG-CMA model: backbone, adapters, head and the preprocessing it expects."""

    name: str = "custom"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def num_frames(self) -> int:
        return self.preprocess.num_segments

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "")

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check/convert a JSON value against a type hint; raise ConfigError naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{path}: {value!r} does not fit {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, path) for v, a in zip(value, args, strict=True))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, args[0], path) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def _parse_literal(text: str) -> Any:
    """Parse an override value: JSON when it parses (numbers, lists, true/false/null), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Return a copy of a dataclass config with dotted ``key=value`` overrides applied.

    >>> cfg = apply_overrides(ModelConfig(), ["adapter.ratio=0.125", "adapter.temporal=false"])
    """
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    data = dataclasses.asdict(config)
    for key, raw in items:
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                scope = ".".join(parts[:i]) or "config"
                options = sorted(node) if isinstance(node, dict) else []
                raise ConfigError(f"unknown override key {key!r}: {scope} has no {part!r}; options: {options}")
            if i == len(parts) - 1:
                if isinstance(node[part], dict):
                    raise ConfigError(f"override {key!r} names a section; set one of its keys instead")
                node[part] = _parse_literal(raw) if isinstance(raw, str) else raw
            else:
                node = node[part]
    return _from_dict(type(config), data, "")


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


PRESET_DIR = Path(__file__).parent / "presets"


def list_presets() -> list[str]:
    """Names of the JSON presets shipped with the library."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str, overrides: list[str] | dict[str, Any] | None = None) -> ModelConfig:
    """Load a named preset (``stgcma/presets/NAME.json``) or a JSON file path, then apply overrides."""
    path = Path(name)
    if not (path.suffix == ".json" and path.exists()):
        path = PRESET_DIR / f"{name}.json"
        if not path.exists():
            raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    config = ModelConfig.from_json(path)
    return apply_overrides(config, overrides) if overrides else config
