"""Display orientation of decoded frames (phone videos stay portrait; STG-CMA Studio, PRODUCT.md).

Phones store portrait video as landscape pixels plus a display matrix (mp4 ``tkhd`` / frame side
data ``DISPLAYMATRIX``). PyAV 18 reports the matrix's rotation as ``VideoFrame.rotation``
(counter-clockwise degrees, in [-180, 180]) but does not apply it. We apply it the way the ``ffmpeg``
command line does (fftools ``autorotate``): quarter turns and flips read from the matrix entries, so
all eight EXIF orientations come out upright. Non-right angles are ignored with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType


@dataclass(frozen=True)
class Orientation:
    """How to bring stored pixels upright: rotate ``k`` quarter turns counter-clockwise, then flip.

    Attributes:
        rotation: the display rotation in degrees (counter-clockwise, as ``VideoFrame.rotation``).
        k: quarter turns counter-clockwise (``np.rot90`` convention).
        flip_vertical: mirror top/bottom after the rotation.
        flip_horizontal: mirror left/right after the rotation.
        exact: False when the matrix asks for a non-right angle (ignored).
    """

    rotation: int = 0
    k: int = 0
    flip_vertical: bool = False
    flip_horizontal: bool = False
    exact: bool = True

    @property
    def swaps_axes(self) -> bool:
        """True when width and height trade places (portrait stored as landscape)."""
        return self.k % 2 == 1

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Stored (H, W, ...) array -> upright array (H', W', ...)."""
        out = np.rot90(image, k=self.k) if self.k else image
        if self.flip_vertical:
            out = out[::-1]
        if self.flip_horizontal:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def invert(self, image: np.ndarray) -> np.ndarray:
        """Upright (H', W', ...) array -> stored orientation (H, W, ...); inverse of :meth:`apply`."""
        out = image
        if self.flip_horizontal:
            out = out[:, ::-1]
        if self.flip_vertical:
            out = out[::-1]
        out = np.rot90(out, k=-self.k) if self.k else out
        return np.ascontiguousarray(out)


def display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's 3x3 display matrix as 9 int32 (16.16 fixed point), or None when absent."""
    for side in frame.side_data:
        if side.type == SideDataType.DISPLAYMATRIX:
            return np.frombuffer(bytes(side), dtype=np.int32)[:9].copy()
    return None


def orientation_of(frame: av.VideoFrame) -> Orientation:
    """Read the display orientation of a decoded frame (identity when it carries none)."""
    matrix = display_matrix(frame)
    if matrix is None:
        return Orientation()
    return orientation_from_matrix(matrix)


def orientation_from_matrix(matrix: np.ndarray) -> Orientation:
    """Orientation from a 9-entry display matrix, following ffmpeg's autorotate rules."""
    a, b, c, d = (float(v) / 65536.0 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    if sx == 0.0 or sy == 0.0:
        return Orientation()
    ccw = -math.degrees(math.atan2(b / sy, a / sx))  # av_display_rotation_get
    rotation = int(round(ccw))
    theta = -round(ccw)  # clockwise degrees, as fftools get_rotation
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        # transpose=cclock_flip (a plain transpose) when matrix[3] > 0, else transpose=clock
        return Orientation(rotation, 1, flip_vertical=True) if c > 0 else Orientation(rotation, -1)
    if abs(theta - 270) < 1:
        # transpose=clock_flip when matrix[3] < 0, else transpose=cclock
        return Orientation(rotation, -1, flip_vertical=True) if c < 0 else Orientation(rotation, 1)
    if abs(theta - 180) < 1:
        return Orientation(rotation, 0, flip_vertical=d < 0, flip_horizontal=a < 0)
    if abs(theta) < 1:
        return Orientation(rotation, 0, flip_vertical=d < 0)
    return Orientation(rotation, exact=False)
