"""The shapes world (DESIGN §4): a seeded, procedural source of captioned images and caption-free videos.

One solid background colour and one object of another colour. Rendering is hard-edged (each pixel is inside or
outside the object at its centre), so every pixel is exactly a palette colour. Geometry is kept in units of the
frame side, so one scene renders at any square resolution S: super-resolution ground truth is a true render at
the high resolution, never an upsample.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mav.conditioning import NATIVE_FPS

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 220),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 190),
    "orange": (240, 130, 30),
    "white": (235, 235, 235),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.25, "large": 0.45}  # diameter or side, as a fraction of S
# Fraction of S per native frame (30 fps). Chosen so the base clip glides: at D^t's 7.5 fps (skip 4) an object
# steps 0.04–0.12 S per frame, well under its size (0.25 or 0.45 S), and its 8 frames span 28 native frames,
# 0.28–0.84 S of travel against a free range of 0.55–0.75 S, so about one wall hit per clip. (0.02–0.08
# stepped up to 0.32 S per base frame and bounced every few frames: clips that jump rather than move.)
SPEED_RANGE = (0.01, 0.03)

# Words a user may type for the same attribute; captions only ever use the canonical names.
_SIZE_WORDS = {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large"}
_SHAPE_WORDS = {
    "circle": "circle", "circles": "circle", "disc": "circle", "disk": "circle",
    "square": "square", "squares": "square",
    "triangle": "triangle", "triangles": "triangle",
}
_BACKGROUND_WORDS = ("background", "backdrop")


@dataclass(frozen=True)
class Scene:
    """One object on one background, in frame units: (0, 0) is the top-left corner, (1, 1) the bottom-right.

    x, y: the centre of the object's bounding box (a `extent` × `extent` square for every shape).
    vx, vy: velocity in frame units per native frame; the object bounces off the walls (see `at`).
    """

    color: str
    shape: str
    size: str
    bg: str
    x: float = 0.5
    y: float = 0.5
    vx: float = 0.0
    vy: float = 0.0

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("color", self.color, PALETTE), ("bg", self.bg, PALETTE), ("shape", self.shape, SHAPES),
            ("size", self.size, SIZES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.color == self.bg:
            raise ValueError(f"the object and the background must differ in colour, both are {self.color}")
        lo, hi = self.bounds
        eps = 1e-9
        if not (lo - eps <= self.x <= hi + eps and lo - eps <= self.y <= hi + eps):
            raise ValueError(
                f"a {self.size} object's centre must lie in [{lo:.3f}, {hi:.3f}] to stay inside the frame, "
                f"got ({self.x:.3f}, {self.y:.3f})"
            )

    @property
    def extent(self) -> float:
        """Diameter (circle) or side / base = height (square, triangle), as a fraction of S."""
        return SIZES[self.size]

    @property
    def bounds(self) -> tuple[float, float]:
        """The range of the centre coordinate that keeps the whole object inside the frame."""
        half = self.extent / 2
        return half, 1.0 - half

    @property
    def speed(self) -> float:
        """|v| in frame units per native frame (bounces flip signs, never the magnitude)."""
        return math.hypot(self.vx, self.vy)

    @property
    def attributes(self) -> dict[str, str]:
        return {"color": self.color, "shape": self.shape, "size": self.size, "bg": self.bg}

    def at(self, t: float) -> Scene:
        """The scene `t` native frames later: straight motion, reflected at the walls."""
        lo, hi = self.bounds
        x, vx = _bounce(self.x, self.vx, np.asarray(t, dtype=np.float64), lo, hi)
        y, vy = _bounce(self.y, self.vy, np.asarray(t, dtype=np.float64), lo, hi)
        return Scene(self.color, self.shape, self.size, self.bg, float(x), float(y), float(vx), float(vy))

    def mask(self, size: int) -> np.ndarray:
        """bool (S, S): True where the pixel centre lies inside the object."""
        return _masks(self.shape, self.extent, np.array([self.x]), np.array([self.y]), size)[0]

    def render(self, size: int) -> np.ndarray:
        """uint8 (S, S, 3) sRGB: exact palette colours, no antialiasing."""
        return _paint(self.mask(size), self.color, self.bg)

    def clip(self, num_frames: int, skip: int = 1, size: int = 64) -> tuple[np.ndarray, float]:
        """`render_clip(self, num_frames, skip, size)`."""
        return render_clip(self, num_frames, skip, size)

    def caption(self, rng: np.random.Generator, p_drop_size: float = 0.3, p_drop_bg: float = 0.3,
                p_drop_color: float = 0.2) -> str:
        """`caption(self, rng, ...)`."""
        return caption(self, rng, p_drop_size, p_drop_bg, p_drop_color)

    def describe(self) -> str:
        """The full caption, no words dropped: "a small red circle on a blue background"."""
        return f"a {self.size} {self.color} {self.shape} on {_article(self.bg)} {self.bg} background"


def random_scene(rng: np.random.Generator | int, moving: bool = True) -> Scene:
    """A uniformly random scene; moving scenes get a speed in SPEED_RANGE and a uniform direction."""
    rng = np.random.default_rng(rng)
    names = list(PALETTE)
    color, bg = (names[i] for i in rng.choice(len(names), size=2, replace=False))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    size = list(SIZES)[int(rng.integers(len(SIZES)))]
    half = SIZES[size] / 2
    x, y = rng.uniform(half, 1.0 - half, size=2)
    vx = vy = 0.0
    if moving:
        speed = rng.uniform(*SPEED_RANGE)
        angle = rng.uniform(0.0, 2 * math.pi)
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    return Scene(color, shape, size, bg, float(x), float(y), float(vx), float(vy))


def render_clip(scene: Scene, num_frames: int, skip: int = 1, size: int = 64) -> tuple[np.ndarray, float]:
    """Frames 0, k, 2k, … of the scene's native 30 fps motion: (uint8 (F, S, S, 3), fps = 30 / k)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
    if skip < 1:
        raise ValueError(f"skip must be ≥ 1, got {skip}")
    t = np.arange(num_frames, dtype=np.float64) * skip
    lo, hi = scene.bounds
    xs, _ = _bounce(scene.x, scene.vx, t, lo, hi)
    ys, _ = _bounce(scene.y, scene.vy, t, lo, hi)
    frames = _paint(_masks(scene.shape, scene.extent, xs, ys, size), scene.color, scene.bg)
    return frames, NATIVE_FPS / skip


def caption(scene: Scene, rng: np.random.Generator, p_drop_size: float = 0.3, p_drop_bg: float = 0.3,
            p_drop_color: float = 0.2) -> str:
    """A caption in one of a few phrasings, the size, the object's colour and the background each dropped at
    random (the shape, the caption's noun, always stays).

    "a large red circle on a blue background", "red circle on a blue background", "a red circle",
    "a small red circle against a blue background", "red circle, blue background", "a circle on blue", …
    Prompts leave words out the same way, and one that names only the background's colour must not be read as
    naming the object's.
    """
    drop_size, drop_bg, article, phrasing = rng.random(), rng.random(), rng.random(), int(rng.integers(4))
    drop_color = rng.random()
    words = (([] if drop_size < p_drop_size else [scene.size]) + ([] if drop_color < p_drop_color else [scene.color])
             + [scene.shape])
    text = " ".join(words)
    if article < 0.75:
        text = f"{_article(words[0])} {text}"
    if drop_bg >= p_drop_bg:
        a_bg = _article(scene.bg)
        text += (
            f" on {a_bg} {scene.bg} background",
            f" against {a_bg} {scene.bg} background",
            f", {scene.bg} background",
            f" on {scene.bg}",
        )[phrasing]
    return text


def parse_prompt(text: str) -> dict[str, str | None]:
    """Read a prompt back into shapes-world attributes: {"color", "shape", "size", "bg"}, each None if absent.

    A colour is the background when the next word is "background" or when it comes after the shape word
    ("a red circle on blue"); otherwise it is the object's colour.
    """
    words = re.findall(r"[a-z]+", text.lower())
    found: dict[str, str | None] = {"color": None, "shape": None, "size": None, "bg": None}
    shape_at = next((i for i, w in enumerate(words) if w in _SHAPE_WORDS), None)
    if shape_at is not None:
        found["shape"] = _SHAPE_WORDS[words[shape_at]]
    for i, word in enumerate(words):
        if word in _SIZE_WORDS and found["size"] is None:
            found["size"] = _SIZE_WORDS[word]
        elif word in PALETTE:
            next_word = words[i + 1] if i + 1 < len(words) else ""
            is_bg = next_word in _BACKGROUND_WORDS or (shape_at is not None and i > shape_at)
            key = "bg" if is_bg else "color"
            if found[key] is None:
                found[key] = word
    return found


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _bounce(p0: float, v: float, t: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity after time t of a point moving at v inside [lo, hi] with elastic walls.

    Unfold the walls: the free coordinate u = p0 − lo + v·t lives on a circle of length 2L (L = hi − lo);
    on [0, L] the point moves forward, on (L, 2L) it is the mirror image 2L − u moving backward.
    """
    length = hi - lo
    if length <= 0:
        return np.full_like(t, lo), np.zeros_like(t)
    u = np.mod(p0 - lo + v * t, 2 * length)
    forward = u <= length
    return lo + np.where(forward, u, 2 * length - u), np.where(forward, v, -v)


def _masks(shape: str, extent: float, xs: np.ndarray, ys: np.ndarray, size: int) -> np.ndarray:
    """bool (F, S, S): the object at centres (xs[i], ys[i]), tested at pixel centres (i + ½) / S."""
    if size < 1:
        raise ValueError(f"size must be ≥ 1, got {size}")
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = centres[None, None, :] - xs[:, None, None]  # (F, 1, S): along width
    dy = centres[None, :, None] - ys[:, None, None]  # (F, S, 1): along height, growing downwards
    half = extent / 2
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Isosceles, apex up, base = height = extent: the half-width grows from 0 at the apex to half at the base.
    return (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) / 2)


def _paint(mask: np.ndarray, color: str, bg: str) -> np.ndarray:
    """bool (..., S, S) → uint8 (..., S, S, 3) in the two palette colours."""
    obj = np.array(PALETTE[color], dtype=np.uint8)
    back = np.array(PALETTE[bg], dtype=np.uint8)
    return np.where(mask[..., None], obj, back)
