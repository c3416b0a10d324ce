"""The out-of-world banner: said plainly when a clip is unlike anything the model was trained on.

The verdict comes from ``stgcma.inference`` (``result["out_of_world"]``, ``"ood_distance"``,
``"ood_threshold"``, ``"ood"``); this module only renders it.
"""

from __future__ import annotations

import html
from typing import Any


def world_html(result: dict[str, Any]) -> str:
    """A red banner for an out-of-world clip (empty otherwise), with the distance next to the threshold."""
    if not result.get("out_of_world"):
        return ""
    world = result.get("ood") or {}
    message = world.get("message") or "This clip looks unlike anything this model was trained on"
    detail = ""
    if result.get("ood_distance") is not None and result.get("ood_threshold") is not None:
        detail = (f" <span class=\"stg-detail\">(its {html.escape(str(world.get('stream', '')))} features lie "
                  f"{float(result['ood_distance']):.2f} from the training clips'; fresh clips of that world stay "
                  f"under {float(result['ood_threshold']):.2f})</span>")
    return f'<div class="stg-status stg-error">⚠ <b>{html.escape(message)}.</b>{detail}</div>'


def other_warnings(result: dict[str, Any], warnings: list[str]) -> list[str]:
    """The warnings without the out-of-world message (the banner already says it)."""
    message = (result.get("ood") or {}).get("message")
    return [w for w in warnings if w != message]
