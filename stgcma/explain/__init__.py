"""Explanations of STG-CMA predictions: cross-modal attention maps and captum attributions.

Reference: Wang, Tian, Hatzinakos, "Towards Efficient Audio-Visual Learners via Empowering
Pre-trained Vision Transformers with Cross-Modal Adaptation", CVPR-W 2024 (arXiv 2403.01862).

Pure library, numpy out, for the app's attention and attribution viewers::

    maps = attention_maps(model, video, audio)  # video (T, 3, S, S), audio (T, 1, F, M)
    maps.select("aggregate", "spatial", "a<-v").heatmap  # (T, S, S) in [0, 1]
    attr = attribute(model, video, audio, Target.ave(segment=3, event_class=7), method="ig")
    attr.video, attr.audio, attr.audio_share  # (T, S, S), (T, F, M), float
"""

from stgcma.explain.attention import AGGREGATE, DIRECTIONS, STAGES, AttentionMap, AttentionMaps, attention_maps
from stgcma.explain.attribution import METHODS, Attribution, Target, attribute
from stgcma.explain.common import normalize_per_segment

__all__ = [
    "AGGREGATE", "DIRECTIONS", "METHODS", "STAGES", "AttentionMap", "AttentionMaps", "Attribution", "Target",
    "attention_maps", "attribute", "normalize_per_segment",
]
