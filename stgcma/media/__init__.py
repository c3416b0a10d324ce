"""Media for STG-CMA Studio: any video file -> aligned one-second (frame, fbank) segments, and back.

The model (METHOD.md "Inputs") sees per one-second segment one RGB frame and one kaldi log-mel
fbank. This package decodes uploads with PyAV, turns them into those tensors with the pure functions
in :mod:`~stgcma.media.features` (shared with training), and writes browser-playable results.
"""

from stgcma.media.encode import write_video
from stgcma.media.features import frames_to_tensor, segment_fbanks, waveform_to_fbank

__all__ = ["frames_to_tensor", "segment_fbanks", "waveform_to_fbank", "write_video"]
