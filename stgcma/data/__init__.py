"""Datasets for STG-CMA: SynthAV, AVE, AVSBench and MUSIC-AVQA, all serving one item format.

``build_dataset(spec, task, split, preprocess)`` takes a folder in a public layout or a
``synthav:seed=S,n=N[,...]`` spec; see :mod:`stgcma.data.base` for the item dict and metadata.
"""

from stgcma.data.ave import AVEDataset
from stgcma.data.avsbench import AVSBenchDataset
from stgcma.data.base import ITEM_KEYS, TASKS, AVDataset, MissingDataError
from stgcma.data.musicavqa import MusicAVQADataset
from stgcma.data.spec import build_dataset, parse_synthav_spec
from stgcma.data.synthav import SynthAV, SynthAVFolder, SynthConfig, write_synthav
from stgcma.data.vocab import Vocab

__all__ = [
    "ITEM_KEYS",
    "TASKS",
    "AVDataset",
    "AVEDataset",
    "AVSBenchDataset",
    "MissingDataError",
    "MusicAVQADataset",
    "SynthAV",
    "SynthAVFolder",
    "SynthConfig",
    "Vocab",
    "build_dataset",
    "parse_synthav_spec",
    "write_synthav",
]
