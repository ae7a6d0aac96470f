"""Shared fixtures: one tiny random model folder per test session, and small input media."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read by huggingface_hub at import: tests never reach the network

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from mav import saving

    folder = tmp_path_factory.mktemp("models") / "tiny"
    saving.init_model(folder, "tiny", seed=0)
    return folder


def _frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A moving bright square on a dark background: n uint8 frames (n, h, w, 3)."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, h, w, 3), 30, dtype=np.uint8)
    for i in range(n):
        x = 2 + i
        frames[i, 4:12, x:x + 8] = rng.integers(150, 255, size=3, dtype=np.uint8)
    return torch.from_numpy(frames)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """clip.mp4 (8 frames, 32×32, 8 fps), a.png and b.png (non-square)."""
    from PIL import Image

    from mav.media import Video
    from mav.media_write import save_video

    folder = tmp_path_factory.mktemp("media")
    save_video(Video(_frames(8, 32, 32), 8.0), folder / "clip.mp4")
    Image.fromarray(_frames(1, 32, 40, seed=1)[0].numpy()).save(folder / "a.png")
    Image.fromarray(_frames(1, 32, 40, seed=2)[0].numpy()).save(folder / "b.png")
    return folder
