"""STG-CMA: parameter-efficient audio-visual learning with ONE frozen image transformer.

Implements Wang, Tian, Hatzinakos, "Towards Efficient Audio-Visual Learners via Empowering
Pre-trained Vision Transformers with Cross-Modal Adaptation" (CVPR-W 2024, arXiv 2403.01862).

>>> import stgcma
>>> model = stgcma.create_model("clip-b16-tiny")   # frozen CLIP ViT-B/16 + STG-CMA adapters, AVE head
"""

from stgcma.config import ModelConfig, apply_overrides, list_presets, load_preset

__version__ = "0.1.0"


def create_model(*args, **kwargs):
    """Build a model from a preset name or config; see ``stgcma.model.create_model``."""
    from stgcma.model import create_model as _create

    return _create(*args, **kwargs)


__all__ = ["ModelConfig", "apply_overrides", "create_model", "list_presets", "load_preset", "__version__"]
