"""SynthAV: a procedural audio-visual world with labels for AVE, AVS and AVQA (PRODUCT.md "SynthAV").

Each clip is one :class:`~stgcma.data.synthav.scene.Scene` (objects of K shape x colour x texture
classes, each with its own sound) drawn deterministically from (seed, split, index); frames, audio,
AVE labels, AVS masks and an AVQA question all derive from it. :class:`SynthAV` serves tensors
straight to training; :func:`write_synthav` (``python -m stgcma synth``) writes mp4 files and label
files that :class:`SynthAVFolder` reads back through the real decoding path.
"""

from stgcma.data.synthav.clip import Clip, format_baseline, make_clip, measure_blind_baseline
from stgcma.data.synthav.dataset import SynthAV
from stgcma.data.synthav.folder import SynthAVFolder, write_synthav
from stgcma.data.synthav.questions import Question, blind_baseline
from stgcma.data.synthav.scene import Scene, SynthConfig
from stgcma.data.synthav.styles import class_names

__all__ = [
    "Clip",
    "Question",
    "Scene",
    "SynthAV",
    "SynthAVFolder",
    "SynthConfig",
    "blind_baseline",
    "class_names",
    "format_baseline",
    "make_clip",
    "measure_blind_baseline",
    "write_synthav",
]
