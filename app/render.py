"""Small formatting helpers for the UI; the heatmap drawing lives in ``stgcma.media.heatmaps``."""

from __future__ import annotations

from stgcma.media.heatmaps import colorize, figure_to_array, heat_on_frame, robust_unit, spectrogram_figure

__all__ = ["clock", "colorize", "figure_to_array", "heat_on_frame", "percent", "robust_unit", "spectrogram_figure"]


def percent(p: float) -> str:
    """0.4567 -> '46%' (NaN -> 'n/a')."""
    return "n/a" if p != p else f"{100.0 * p:.0f}%"


def clock(seconds: float) -> str:
    """Seconds as m:ss."""
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
