"""Reading shapes-world attributes back off pixels: the judge that scores generated videos (DESIGN §4).

Pure numpy, any resolution, a whole clip at a time. For every frame:

1. each pixel takes the nearest palette colour (Euclidean in sRGB);
2. the background is the majority colour of the frame's border pixels;
3. the foreground (every pixel of another colour) is split into 4-connected components; the object is the largest.
   Pixels of several colours join one component, so the colour fringes a blurry edge leaves around an object
   count as part of it rather than as objects of their own;
4. the object's colour is its component's majority colour. Its outline is the component's pixels nearer that
   colour than the background's (a midpoint split that blur does not move); from the outline come its centroid,
   its size (bounding-box extent: small 0.25·S, large 0.45·S, threshold 0.35·S) and its shape, the nearest
   prototype in three features: the fill ratio of the bounding box (circle π/4, square 1, triangle ½), the
   height of the centroid within the box (½ for a circle or square, ⅔ from the top for an apex-up triangle)
   and the share of the box's corner blocks covered (circle ≈ 0.1, square 1, triangle ⅜). All three shapes
   have a square bounding box, so its aspect tells nothing.

A frame has an object when the background covers at least half of it and the largest component is significant
(≥ 1 % of the frame); it shows *exactly one* object when no other component is significant. Uniform noise has
no majority colour covering half the frame, so it has no object and scores no object attributes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mav.world import PALETTE, SHAPES, SIZES

COLORS = tuple(PALETTE)
_PALETTE = np.array([PALETTE[c] for c in COLORS], dtype=np.float32)  # (8, 3)

MIN_BACKGROUND = 0.5  # a frame whose background covers less than this has no readable object
MIN_OBJECT_AREA = 0.01  # a component smaller than this fraction of the frame is a speck, not an object
SIZE_THRESHOLD = (SIZES["small"] + SIZES["large"]) / 2  # 0.35: bounding-box extent / frame side
# Shape prototypes, in the order of SHAPES: (fill ratio in the bounding box, centroid height within the box from
# the top, share of the box's corner blocks inside the object), and how far each feature may stray.
_SHAPE_PROTOTYPES = np.array([[np.pi / 4, 0.5, 0.1], [1.0, 0.5, 1.0], [0.5, 2 / 3, 0.375]])
_SHAPE_SCALES = np.array([0.1, 0.06, 0.5])
assert SHAPES == ("circle", "square", "triangle")


@dataclass
class Readings:
    """What the judge read off each of F frames (F, …) arrays; -1 (or NaN) where a frame has no object.

    bg, color: palette indices into COLORS; shape: index into SHAPES; size: 0 small, 1 large.
    centroid: (F, 2) object centroid (x, y) in pixels from the top-left corner (pixel centres at i + ½).
    """

    bg: np.ndarray
    color: np.ndarray
    shape: np.ndarray
    size: np.ndarray
    found: np.ndarray  # bool: an object could be read
    single: np.ndarray  # bool: exactly one object (presence)
    centroid: np.ndarray
    extent: np.ndarray  # bounding-box extent / frame side
    fill: np.ndarray  # mask area / bounding-box area
    background_fraction: np.ndarray
    frame_size: int  # S, the side of the (square) frame

    def __len__(self) -> int:
        return len(self.bg)

    def attributes(self, t: int) -> dict[str, str | None]:
        """Frame t's attributes by name, as `parse_prompt` gives them: {"color", "shape", "size", "bg"}."""
        sizes = tuple(SIZES)
        return {
            "color": COLORS[self.color[t]] if self.color[t] >= 0 else None,
            "shape": SHAPES[self.shape[t]] if self.shape[t] >= 0 else None,
            "size": sizes[self.size[t]] if self.size[t] >= 0 else None,
            "bg": COLORS[self.bg[t]],
        }


def palette_index(frames: np.ndarray) -> np.ndarray:
    """uint8 (…, 3) RGB → int (…) index of the nearest palette colour (Euclidean in sRGB).

    Looked up in a table over 6 bits per channel (each cell answers for its centre), so a frame costs one gather;
    only colours within 2 levels of a boundary between two palette colours can differ from the exact argmin.
    """
    q = np.asarray(frames, dtype=np.uint8) >> 2
    return _nearest_table()[(q[..., 0].astype(np.int32) << 12) | (q[..., 1].astype(np.int32) << 6) | q[..., 2]]


@functools.cache
def _nearest_table() -> np.ndarray:
    """(64³,) uint8: the nearest palette colour to each 6-bit cell's centre, argmin ‖x − p‖² = ‖p‖² − 2x·p."""
    centres = (np.arange(64, dtype=np.float32) * 4 + 1.5)
    x = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1).reshape(-1, 3)
    score = (_PALETTE**2).sum(1)[None] - 2.0 * x @ _PALETTE.T  # (64³, 8)
    return score.argmin(1).astype(np.uint8)


def border_majority(index: np.ndarray) -> np.ndarray:
    """(F, H, W) palette indices → (F,) the most common index among each frame's border pixels."""
    border = np.concatenate([index[:, 0], index[:, -1], index[:, 1:-1, 0], index[:, 1:-1, -1]], axis=1)
    counts = (border[..., None] == np.arange(len(COLORS))).sum(1)  # (F, 8)
    return counts.argmax(1)


def label_components(mask: np.ndarray) -> np.ndarray:
    """4-connected components of a (…, H, W) bool mask, each leading axis separately.

    Returns int64 labels of the mask's shape: -1 off the mask, else the flat index of the component's first pixel
    (so labels are unique across frames). Union–find in numpy: hook each edge's larger root under its smaller one,
    then jump pointers to the roots; a few rounds connect any shape.
    """
    shape = mask.shape
    flat = np.arange(mask.size, dtype=np.int64).reshape(shape)
    edges = []
    for axis in (-1, -2):  # horizontal, then vertical neighbours, never across the leading axes
        a = [slice(None)] * mask.ndim
        b = [slice(None)] * mask.ndim
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        both = mask[tuple(a)] & mask[tuple(b)]
        edges.append((flat[tuple(a)][both], flat[tuple(b)][both]))
    left = np.concatenate([e[0] for e in edges])
    right = np.concatenate([e[1] for e in edges])
    parent = flat.reshape(-1).copy()
    while True:
        pa, pb = parent[left], parent[right]
        differ = pa != pb
        if not differ.any():
            break
        left, right = left[differ], right[differ]
        lo, hi = np.minimum(pa[differ], pb[differ]), np.maximum(pa[differ], pb[differ])
        np.minimum.at(parent, hi, lo)
        while True:  # pointer jumping: every pixel straight to its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    labels = parent.reshape(shape)
    return np.where(mask, labels, -1)


def classify_shape(fill: np.ndarray, centroid_height: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Nearest shape prototype (index into SHAPES) for arrays of the three shape features."""
    features = np.stack([fill, centroid_height, corners], axis=-1)[..., None, :]  # (…, 1, 3)
    dist = (((features - _SHAPE_PROTOTYPES) / _SHAPE_SCALES) ** 2).sum(-1)  # (…, 3)
    return dist.argmin(-1)


def judge_video(frames: np.ndarray) -> Readings:
    """Judge every frame of a uint8 (F, H, W, 3) clip (or one (H, W, 3) image as a 1-frame clip)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[1:3]) < 3:
        raise ValueError(f"expected uint8 frames (F, H, W, 3) of at least 3×3, got {frames.dtype} {frames.shape}")
    f, h, w, _ = frames.shape
    side = max(h, w)
    # 1–2. palette colours and the background
    index = palette_index(frames)  # (F, H, W)
    bg = border_majority(index)
    foreground = index != bg[:, None, None]
    background_fraction = 1.0 - foreground.mean(axis=(1, 2))
    # 3. connected components; per frame the largest and the number of significant ones
    labels = label_components(foreground)
    roots, counts = np.unique(labels[foreground], return_counts=True)
    root_frame = roots // (h * w)
    significant = counts >= MIN_OBJECT_AREA * h * w
    n_significant = np.bincount(root_frame[significant], minlength=f)
    order = np.lexsort((-counts, root_frame))  # by frame, then largest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = root_frame[order][1:] != root_frame[order][:-1]
    largest = np.full(f, -1, dtype=np.int64)
    largest_area = np.zeros(f, dtype=np.int64)
    largest[root_frame[order][first]] = roots[order][first]
    largest_area[root_frame[order][first]] = counts[order][first]
    found = (background_fraction >= MIN_BACKGROUND) & (largest_area >= MIN_OBJECT_AREA * h * w)
    single = found & (n_significant == 1)
    # 4. per frame with an object: its colour, then its shape, size and centroid from a two-colour mask
    rgb = frames.astype(np.float32)
    out = {key: np.full(f, -1, dtype=np.int64) for key in ("color", "shape", "size")}
    centroid = np.full((f, 2), np.nan)
    extent, fill = np.full(f, np.nan), np.full(f, np.nan)
    for t in np.nonzero(found)[0]:
        component = labels[t] == largest[t]
        colour = int(np.bincount(index[t][component], minlength=len(COLORS)).argmax())
        mask = _object_mask(rgb[t], component, colour, int(bg[t]))
        if not mask.any():
            found[t] = single[t] = False
            continue
        features = _shape_features(mask)
        out["color"][t] = colour
        out["shape"][t] = classify_shape(*features["shape"])
        extent[t] = max(features["box"][0] / w, features["box"][1] / h)
        out["size"][t] = int(extent[t] >= SIZE_THRESHOLD)
        centroid[t] = features["centroid"]
        fill[t] = features["shape"][0]
    return Readings(bg=bg, color=out["color"], shape=out["shape"], size=out["size"], found=found, single=single,
                    centroid=centroid, extent=extent, fill=fill, background_fraction=background_fraction,
                    frame_size=side)


def _object_mask(rgb: np.ndarray, component: np.ndarray, colour: int, bg: int) -> np.ndarray:
    """The object's pixels: those of its component (grown by one pixel) nearer its colour than the background's.

    Blurred edges hold in-between colours that the palette may read as a third colour; splitting at the midpoint
    of the object–background line keeps the object's true outline, where the component would add a fringe.
    """
    grown = component.copy()
    grown[1:] |= component[:-1]
    grown[:-1] |= component[1:]
    grown[:, 1:] |= component[:, :-1]
    grown[:, :-1] |= component[:, 1:]
    c, b = _PALETTE[colour], _PALETTE[bg]
    t = ((rgb - b) @ (c - b)) / float((c - b) @ (c - b))  # 0 at the background colour, 1 at the object's
    return grown & (t > 0.5)


def _shape_features(mask: np.ndarray) -> dict:
    """Bounding box (w, h), centroid (x, y) in pixels, and the shape features (fill, centroid height, corners)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    box = mask[top:bottom + 1, left:right + 1]
    box_h, box_w = box.shape
    ys, xs = np.nonzero(box)
    area = len(ys)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5  # within the box, pixel centres at i + ½
    # Corner blocks an eighth of the box wide: a circle barely enters them (its edge is 0.07 of the extent
    # from each side along the diagonal), a square fills them, an apex-up triangle fills ¾ of the bottom two.
    k = max(1, round(min(box_h, box_w) / 8))
    corners = np.mean([box[:k, :k].mean(), box[:k, -k:].mean(), box[-k:, :k].mean(), box[-k:, -k:].mean()])
    return {"box": (box_w, box_h), "centroid": (left + cx, top + cy),
            "shape": (area / (box_h * box_w), cy / box_h, corners)}


def judge_frame(image: np.ndarray) -> dict[str, str | None]:
    """The attributes of one uint8 (H, W, 3) image: {"color", "shape", "size", "bg"} (None where unreadable)."""
    return judge_video(image).attributes(0)


__all__ = ["COLORS", "Readings", "palette_index", "border_majority", "label_components", "classify_shape",
           "judge_video", "judge_frame", "SIZE_THRESHOLD", "MIN_OBJECT_AREA", "MIN_BACKGROUND"]
