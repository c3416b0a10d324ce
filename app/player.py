"""The Analyze tab's player: the clip as uploaded, with the AVS mask layers drawn over it by the page.

The page plays the original file (served by Gradio from its upload cache) and stacks one transparent
PNG per second on it (``stgcma.report.write_report(overlay_layers=True)``); a few lines of JavaScript
cross-fade the layers of the neighbouring segment centres as the video plays or seeks, the same
blend as the rendered overlay mp4. A layer loads when the playhead comes within a few segments of it,
so a long clip does not fetch hundreds of PNGs before it plays. A clip that a browser cannot play as it is (see
``stgcma.media.browser.browser_playable``) is shown as the rendered mp4 instead, once it exists.
The value is plain data (URLs of files in Gradio's upload cache), so a seek is a new value with a
new ``seek`` nonce; the page keeps the video and the layers it already loaded.
"""

from __future__ import annotations

import html
import itertools
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder

FILE_ROUTE = "gradio_api/file="  # relative: works under a mount path or a proxy too
_SEEKS = itertools.count(1)

TEMPLATE = """
<div class="stg-player" data-mode="${value && value.mode ? value.mode : 'empty'}">
${value && value.src
  ? `<video class="stg-video" src="${value.src}" controls playsinline preload="auto"></video>`
  : `<div class="stg-player-empty">${value && value.message ? value.message : 'The analysed clip plays here.'}</div>`}
${(value && value.layers ? value.layers : []).map((layer, i) =>
  `<img class="stg-layer" alt="" data-segment="${i}" data-src="${layer}">`).join('')}
</div>
"""

SCRIPT = """
let painting = 0, lastSeek = null;
const AHEAD = 2;  // layers load when within this many segments of the playhead, not all at once
const video = () => element.querySelector('video.stg-video');
function paint() {
  const v = video(), layers = element.querySelectorAll('img.stg-layer');
  if (!v || !layers.length) return;
  const seconds = (props.value && props.value.segment_seconds) || 1, n = layers.length, t = v.currentTime;
  let lo = -1, hi = -1, w = 0;
  if (t <= n * seconds) {
    const pos = Math.min(Math.max(t / seconds - 0.5, 0), n - 1);
    lo = Math.floor(pos); hi = Math.min(lo + 1, n - 1); w = pos - lo;
  }
  const at = Math.max(lo, 0);
  layers.forEach((layer, i) => {
    layer.style.opacity = String((i === lo ? 1 - w : 0) + (i === hi ? w : 0));
    if (!layer.getAttribute('src') && i >= at - AHEAD && i <= at + AHEAD + 1) layer.src = layer.dataset.src;
  });
}
function loop() {
  paint();
  const v = video();
  painting = v && !v.paused && !v.ended ? requestAnimationFrame(loop) : 0;
}
for (const type of ['loadeddata', 'play', 'playing', 'seeked', 'timeupdate', 'pause']) {
  element.addEventListener(type, () => { if (!painting) loop(); }, true);
}
function seek() {
  const v = video(), target = props.value && props.value.seek;
  if (!v || !target || target[1] === lastSeek) return;
  lastSeek = target[1];
  const go = () => { v.currentTime = target[0]; paint(); };
  if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go, {once: true});
}
watch('value', () => { paint(); seek(); });
seek();
"""


_COPIES: OrderedDict[tuple[str, str, int, int], str] = OrderedDict()  # (file, cache, mtime, size) -> copy
_MAX_COPIES = 4096


def file_url(path: str | Path) -> str:
    """The URL under which Gradio serves ``path``, copied into its upload cache first when outside it
    (an overlay mp4 in the work folder; a clip handed to a handler directly).

    Copies are remembered while the file is unchanged (same mtime and size) and the copy still
    exists, so a seek does not hash the clip's mask layers and overlay mp4 into the cache again.
    """
    folder = Path(get_upload_folder()).resolve()
    path = Path(path).resolve()
    if folder not in path.parents:
        stat = path.stat()
        key = (str(path), str(folder), stat.st_mtime_ns, stat.st_size)
        copy = _COPIES.pop(key, None)
        if copy is None or not Path(copy).exists():
            copy = save_file_to_cache(path, str(folder))
        _COPIES[key] = copy  # most recently used last
        while len(_COPIES) > _MAX_COPIES:
            _COPIES.popitem(last=False)
        path = Path(copy)
    return FILE_ROUTE + quote(str(path))


def player_value(video: str | None, result: dict[str, Any], segment_seconds: float = 1.0,
                 seek: float | None = None) -> dict[str, Any]:
    """What the player shows for one analysis (``result``: its result.json as a dict).

    Modes: ``layers`` (the original clip, the mask layers over it), ``baked`` (the rendered overlay
    mp4), ``plain`` (the original, no AVS model), ``pending`` (nothing playable yet: the overlay mp4
    is still being rendered).
    """
    files = result.get("files", {})
    value: dict[str, Any] = {"segment_seconds": float(segment_seconds), "layers": [], "src": None}
    if result.get("browser_playable") and video:
        value["src"] = file_url(video)
        value["layers"] = [file_url(p) for p in files.get("layers", [])]  # URLs: a seek resends only these
        value["mode"] = "layers" if value["layers"] else "plain"
    elif files.get("overlay"):
        value.update(src=file_url(files["overlay"]), mode="baked")
    else:
        value.update(mode="pending", message=html.escape(
            "This file does not play in a browser as it is: a playable copy with the masks is being rendered…"))
    if seek is not None:
        value["seek"] = [float(seek), next(_SEEKS)]
    return value


def build_player(label: str) -> gr.HTML:
    """The player component (``player_value`` sets what it shows)."""
    return gr.HTML(None, label=label, show_label=True, container=True, html_template=TEMPLATE, js_on_load=SCRIPT,
                   apply_default_css=False, elem_classes=["stg-player-box"])
