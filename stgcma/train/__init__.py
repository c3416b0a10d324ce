"""Training and evaluation for STG-CMA (AVE, AVS, AVQA): single process, one GPU, or torchrun DDP.

The library (``stgcma.model`` and friends) never imports this package; this package uses the
library. Entry points: ``python -m stgcma train`` / ``eval``, or ``fit`` / ``evaluate`` here.
"""

from stgcma.train.config import TrainConfig
from stgcma.train.loop import evaluate, fit

__all__ = ["TrainConfig", "evaluate", "fit"]
