"""Drawing SynthAV scenes: frames, sounding-object masks and class maps (numpy only, vectorised per object).

Shapes are drawn from approximate signed distances in each object's rotated local frame (units of
its radius), with one pixel of anti-aliasing; a pixel belongs to an object's mask when its coverage
is at least one half. Rendering reads only the visual fields of a scene (class, position, motion,
rotation, shade, visibility), never ``sounding``, so the picture does not reveal what sounds.
Geometry is in fractions of the frame side, so a scene renders the same at any resolution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stgcma.data.synthav.backdrops import SCENE_KINDS, scene_backdrop
from stgcma.data.synthav.scene import Background, Scene, SceneObject
from stgcma.data.synthav.styles import ClassStyle, class_styles

_AA_MARGIN = 1.35


def segment_times(num_segments: int, position: float = 0.5) -> np.ndarray:
    """Time of the frame shown to the model for each one-second segment (its centre by default)."""
    return np.arange(num_segments, dtype=np.float64) + position


def video_times(num_segments: int, fps: int) -> np.ndarray:
    """Presentation times ``k / fps`` of every frame of a ``num_segments``-second video."""
    return np.arange(num_segments * fps, dtype=np.float64) / fps


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights, pixel centres aligned to the grid ends."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def background_image(bg: Background, size: int) -> np.ndarray:
    """The static backdrop, float32 (S, S, 3) in [0, 255]: its picture, then the fine grain."""
    rng = np.random.default_rng(bg.seed)
    if bg.kind in SCENE_KINDS:
        image = scene_backdrop(bg.kind, bg.seed, size, bg.colour_a, bg.colour_b)
    else:
        image = _two_colour_backdrop(bg, size, rng)
    grain = rng.standard_normal((size, size, 1), dtype=np.float32) * bg.grain
    return image + grain


def _two_colour_backdrop(bg: Background, size: int, rng: np.random.Generator) -> np.ndarray:
    """A gradient or smooth noise between the backdrop's two colours, float32 (S, S, 3)."""
    coords = (np.arange(size) + 0.5) / size
    if bg.kind == "gradient":
        p = (coords[None, :] - 0.5) * np.cos(bg.angle) + (coords[:, None] - 0.5) * np.sin(bg.angle)
        p = np.clip(p / 1.42 + 0.5, 0, 1)  # (S, S)
    else:
        grid = int(rng.integers(3, 7))
        values = rng.random((grid, grid))
        m = _interp_matrix(size, grid)
        p = m @ values @ m.T  # (S, S)
        p = p * p * (3 - 2 * p)
    a = np.asarray(bg.colour_a, dtype=np.float32)
    b = np.asarray(bg.colour_b, dtype=np.float32)
    return a + (b - a) * p[..., None].astype(np.float32)  # (S, S, 3)


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (negative inside) to a unit-radius shape in local coordinates."""
    rho = np.hypot(u, v)
    if shape == "circle":
        return rho - 0.95
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.78
    if shape == "triangle":
        faces = [u * np.cos(a) + v * np.sin(a) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3,
                                                           np.pi / 2 + 4 * np.pi / 3)]
        return np.maximum(np.maximum(faces[0], faces[1]), faces[2]) - 0.55
    if shape == "star":
        phi = np.arctan2(v, u)
        return (rho - (0.62 + 0.38 * np.cos(5 * phi))) * 0.6
    if shape == "crescent":
        return np.maximum(rho - 0.95, 0.8 - np.hypot(u - 0.45, v))
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 0.32, av - 0.95), np.maximum(au - 0.95, av - 0.32))
    if shape == "ellipse":
        return (np.hypot(u, v / 0.5) - 1.0) * 0.5
    if shape == "ring":
        return np.abs(rho - 0.68) - 0.28
    raise ValueError(f"unknown shape {shape!r}")


def _texture_factor(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray | float:
    """Brightness factor of the class texture (stripes and dots are darker marks)."""
    if texture == "stripes":
        return np.where(np.mod(u * 2.2, 1.0) < 0.5, 0.45, 1.0)
    if texture == "dots":
        du = np.mod(u, 0.6) - 0.3
        dv = np.mod(v, 0.6) - 0.3
        return np.where(du * du + dv * dv < 0.16**2, 0.4, 1.0)
    return 1.0


def object_patch(obj: SceneObject, style: ClassStyle, t: float, size: int
                 ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Coverage and colour of one object at time ``t`` over its bounding box.

    Returns:
        (rows, cols, coverage float32 (h, w) in [0, 1], colour float32 (h, w, 3)), or ``None`` when
        the box falls outside the frame.
    """
    cx, cy = obj.centre(t)
    r_px = obj.radius * size
    half = r_px * _AA_MARGIN + 2
    x0, x1 = max(int(np.floor(cx * size - half)), 0), min(int(np.ceil(cx * size + half)), size)
    y0, y1 = max(int(np.floor(cy * size - half)), 0), min(int(np.ceil(cy * size + half)), size)
    if x1 <= x0 or y1 <= y0:
        return None
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx * size)[None, :] / r_px  # (1, w)
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy * size)[:, None] / r_px  # (h, 1)
    theta = obj.angle + obj.spin * t
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = c * dx + s * dy  # (h, w)
    v = -s * dx + c * dy  # (h, w)
    coverage = np.clip(0.5 - _shape_distance(style.shape, u, v) * r_px, 0.0, 1.0).astype(np.float32)
    base = np.asarray(style.colour, dtype=np.float32) * obj.shade
    factor = np.broadcast_to(np.asarray(_texture_factor(style.texture, u, v), dtype=np.float32), u.shape)
    colour = factor[..., None] * base  # (h, w, 3)
    return slice(y0, y1), slice(x0, x1), coverage, colour


def _segment(t: float, num_segments: int) -> int:
    return min(max(int(np.floor(t)), 0), num_segments - 1)


def render_frames(scene: Scene, times: np.ndarray, size: int,
                  styles: list[ClassStyle] | None = None) -> np.ndarray:
    """Frames of a scene at the given times (seconds).

    Args:
        scene: the clip.
        times: (F,) frame times; an object is drawn when visible in the segment ``floor(t)``.
        size: frame side in pixels.
        styles: the class table (default: ``class_styles(scene.num_classes)``).

    Returns:
        uint8 (F, S, S, 3) RGB frames.
    """
    if scene.world == "music":
        from stgcma.data.synthav import music
        return music.render_frames(scene, times, size)
    styles = styles or class_styles(scene.num_classes)
    return composite(scene, times, size, lambda obj, t: object_patch(obj, styles[obj.cls], t, size))


Patch = tuple[slice, slice, np.ndarray, np.ndarray]


def composite(scene: Scene, times: np.ndarray, size: int,
              patch: Callable[[SceneObject, float], Patch | None]) -> np.ndarray:
    """Frames of a scene: its backdrop, then each visible object's ``patch(obj, t)`` (rows, cols,
    coverage (h, w), colour (h, w, 3)) blended over it in slot order. Every world draws through this.

    Returns:
        uint8 (F, S, S, 3) RGB frames.
    """
    background = background_image(scene.background, size)
    frames = np.empty((len(times), size, size, 3), dtype=np.float32)
    for f, t in enumerate(times):
        canvas = frames[f]
        canvas[:] = background
        seg = _segment(t, scene.num_segments)
        for obj in scene.objects:
            if not obj.visible[seg]:
                continue
            drawn = patch(obj, float(t))
            if drawn is None:
                continue
            rows, cols, cov, colour = drawn
            region = canvas[rows, cols]
            canvas[rows, cols] = region + (colour - region) * cov[..., None]
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


def object_mask(scene: Scene, obj: SceneObject, t: float, size: int,
                styles: list[ClassStyle] | None = None) -> np.ndarray:
    """Pixel mask (bool (S, S)) of one object at time ``t``, ignoring visibility."""
    if scene.world == "music":
        from stgcma.data.synthav import music
        return music.object_mask(obj, t, size)
    styles = styles or class_styles(scene.num_classes)
    mask = np.zeros((size, size), dtype=bool)
    patch = object_patch(obj, styles[obj.cls], float(t), size)
    if patch is not None:
        rows, cols, cov, _ = patch
        mask[rows, cols] = cov >= 0.5
    return mask


def render_masks(scene: Scene, times: np.ndarray, size: int, styles: list[ClassStyle] | None = None,
                 objects: Callable[[Scene, int], list[int]] | None = None) -> np.ndarray:
    """AVS ground truth: union of the masks of the objects visible AND sounding at each time.

    Args:
        objects: which objects to paint in segment ``t`` (indices); default ``Scene.sounding_objects``.

    Returns:
        bool (F, S, S).
    """
    if scene.world != "music":
        styles = styles or class_styles(scene.num_classes)
    pick = objects or Scene.sounding_objects
    masks = np.zeros((len(times), size, size), dtype=bool)
    for f, t in enumerate(times):
        seg = _segment(t, scene.num_segments)
        for i in pick(scene, seg):
            masks[f] |= object_mask(scene, scene.objects[i], float(t), size, styles)
    return masks


def render_class_maps(scene: Scene, times: np.ndarray, size: int,
                      styles: list[ClassStyle] | None = None) -> np.ndarray:
    """What class each pixel shows: 0 for the backdrop, ``1 + cls`` where a visible object is drawn.

    Objects are painted in drawing order, so a later object covers an earlier one, as in the frames.

    Returns:
        uint8 (F, S, S).
    """
    if scene.world != "music":
        styles = styles or class_styles(scene.num_classes)
    if scene.num_classes > 254:
        raise ValueError(f"a uint8 class map holds at most 254 classes, the scene has {scene.num_classes}")
    maps = np.zeros((len(times), size, size), dtype=np.uint8)
    for f, t in enumerate(times):
        seg = _segment(t, scene.num_segments)
        for obj in scene.objects:
            if obj.visible[seg]:
                maps[f][object_mask(scene, obj, float(t), size, styles)] = obj.cls + 1
    return maps
