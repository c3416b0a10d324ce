"""Scene-like SynthAV backdrops: a stage, a room, the outdoors (numpy only, static per clip).

Each is drawn from the backdrop's own seed in fractions of the frame side, so it looks the same at any
resolution and never depends on what sounds. They stay muted and low in contrast next to the objects,
as a real scene's background does, yet give the model edges that are not objects (a horizon, a window
frame, curtain folds, a spotlight) to learn to ignore.

Every function returns float32 (S, S, 3) in [0, 255], before the frame-wide grain.
"""

from __future__ import annotations

import numpy as np

SCENE_KINDS = ("stage", "room", "outdoors")


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``a`` where ``weight`` is 0, ``b`` where it is 1: (S, S, 3)."""
    return a + (b - a) * weight[..., None]


def _smooth_step(edge: np.ndarray, width: float) -> np.ndarray:
    """0 below ``-width``, 1 above ``width``, smooth in between (anti-aliased region boundaries)."""
    p = np.clip(edge / (2 * width) + 0.5, 0.0, 1.0)
    return p * p * (3 - 2 * p)


def stage(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, wall: np.ndarray,
          floor: np.ndarray) -> np.ndarray:
    """Curtains with soft vertical folds over a floor, and a spotlight's pool of light."""
    horizon = rng.uniform(0.62, 0.8)
    folds = rng.uniform(5.0, 10.0)
    curtain = wall * (0.72 + 0.28 * np.cos(2 * np.pi * (x * folds + rng.uniform())) ** 2)[..., None]  # (S, S, 3)
    boards = 0.9 + 0.1 * (np.mod((y - horizon) * 18.0, 1.0) > 0.08)  # (S, S): plank seams
    image = _mix(curtain, floor * boards[..., None], _smooth_step(y - horizon, 0.006))
    sx, sy, spread = rng.uniform(0.25, 0.75), rng.uniform(0.55, 0.9), rng.uniform(0.25, 0.4)
    light = np.exp(-(((x - sx) / spread) ** 2 + ((y - sy) / (0.6 * spread)) ** 2))  # (S, S)
    return image * (0.75 + 0.45 * light)[..., None]


def room(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, wall: np.ndarray,
         floor: np.ndarray) -> np.ndarray:
    """A papered wall with a window, above a wooden floor."""
    horizon = rng.uniform(0.68, 0.85)
    stripes = rng.uniform(10.0, 22.0)
    paper = wall * (0.93 + 0.07 * (np.mod(x * stripes, 1.0) < 0.5))[..., None]
    image = _mix(paper, floor * (0.88 + 0.12 * np.cos(np.pi * x * 9.0) ** 2)[..., None],
                 _smooth_step(y - horizon, 0.005))
    w, h = rng.uniform(0.18, 0.3), rng.uniform(0.2, 0.32)
    wx, wy = rng.uniform(0.05, 0.95 - w), rng.uniform(0.06, max(0.07, horizon - h - 0.08))
    inside = (_smooth_step(x - wx, 0.004) * _smooth_step(wx + w - x, 0.004)
              * _smooth_step(y - wy, 0.004) * _smooth_step(wy + h - y, 0.004))  # (S, S)
    bars = np.maximum(_smooth_step(0.012 - np.abs(x - (wx + w / 2)), 0.003),
                      _smooth_step(0.012 - np.abs(y - (wy + h / 2)), 0.003))  # the window's cross
    sky = np.array([150.0, 180.0, 205.0], dtype=np.float32) * (1.0 - 0.25 * ((y - wy) / h))[..., None]
    pane = _mix(sky, wall * 0.55, bars)
    return _mix(image, pane, inside)


def outdoors(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, wall: np.ndarray,
             floor: np.ndarray) -> np.ndarray:
    """A sky with soft clouds over rolling ground; the ground takes the backdrop's second colour."""
    horizon = rng.uniform(0.55, 0.75) + 0.04 * np.sin(2 * np.pi * (x * rng.uniform(0.6, 1.6) + rng.uniform()))
    top = np.array(rng.uniform([70, 110, 160], [110, 150, 200]), dtype=np.float32)
    low = np.array([190.0, 200.0, 205.0], dtype=np.float32)
    sky = _mix(np.broadcast_to(top, x.shape + (3,)), np.broadcast_to(low, x.shape + (3,)),
               np.clip(y / 0.8, 0.0, 1.0))
    grid = rng.random((5, 8))
    clouds = np.clip((_bilinear(grid, x, y) - 0.55) * 3.0, 0.0, 1.0)  # (S, S) in [0, 1]
    sky = _mix(sky, np.broadcast_to(np.float32(225.0), sky.shape), 0.7 * clouds)
    ground = 0.5 * (floor + np.array([90.0, 120.0, 70.0], dtype=np.float32))
    ground = ground * (0.85 + 0.15 * np.clip((y - horizon) * 3.0, 0.0, 1.0))[..., None]
    return _mix(sky, ground, _smooth_step(y - horizon, 0.006))


def _bilinear(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of a (gh, gw) grid spread over the unit square, sampled at (x, y) with smooth-stepped
    bilinear weights (no creases where the cells meet)."""
    gh, gw = grid.shape
    gx, gy = x * (gw - 1), y * (gh - 1)
    x0 = np.clip(np.floor(gx).astype(int), 0, gw - 2)
    y0 = np.clip(np.floor(gy).astype(int), 0, gh - 2)
    fx, fy = gx - x0, gy - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


DRAW = {"stage": stage, "room": room, "outdoors": outdoors}


def scene_backdrop(kind: str, seed: int, size: int, colour_a: tuple[float, float, float],
                   colour_b: tuple[float, float, float]) -> np.ndarray:
    """The backdrop ``kind`` (one of :data:`SCENE_KINDS`) at ``size`` px, float32 (S, S, 3) in [0, 255]."""
    if kind not in DRAW:
        raise ValueError(f"unknown scene backdrop {kind!r}; expected one of {list(SCENE_KINDS)}")
    rng = np.random.default_rng([seed, 1])
    coords = ((np.arange(size) + 0.5) / size).astype(np.float32)
    x, y = np.broadcast_to(coords[None, :], (size, size)), np.broadcast_to(coords[:, None], (size, size))
    wall = np.asarray(colour_a, dtype=np.float32)
    floor = np.asarray(colour_b, dtype=np.float32)
    return np.clip(DRAW[kind](rng, x, y, wall, floor), 0.0, 255.0).astype(np.float32)
