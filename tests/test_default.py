"""The embedded default model: resolved offline from weights/ (checkout) or mav/_weights/ (wheel), and it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mav import hub
from mav.cli import run
from mav.media import read_video

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "shapes"
COMPONENTS = ("clip", "prior", "decoder", "interpolator", "sr_low", "sr_high")


def test_default_resolves_to_the_shipped_weights():
    assert hub.resolve_model(None) == WEIGHTS.resolve()
    assert hub.resolve_model("shapes") == WEIGHTS.resolve()
    for component in COMPONENTS:
        assert (WEIGHTS / component / "model.safetensors").is_file(), component


def test_shipped_weights_are_small():
    total = sum(p.stat().st_size for p in WEIGHTS.rglob("*.safetensors"))
    assert total <= 50 * 2**20, total


def test_default_generates_offline_without_model_option(tmp_path, capsys):
    out = tmp_path / "circle.mp4"
    code = run(["generate", "a large red circle on a blue background", "-o", str(out), "--seed", "0",
                "--steps", "prior=4,decoder=6,interpolator=2,sr_low=2,sr_high=2", "-q"])
    assert code == 0
    video = read_video(out)
    assert (video.num_frames, video.height, video.width) == (29, 128, 128)
    assert video.fps == pytest.approx(30.0)


def test_default_in_a_fresh_offline_process(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "mav", "info", "--json"], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"decoder"' in result.stdout


def test_wheel_contains_the_weights_and_resolves_them(tmp_path):
    """A plain (non-editable) install finds the default inside the package, not in a checkout."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(REPO), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("mav-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for component in COMPONENTS:
        assert f"mav/_weights/shapes/{component}/model.safetensors" in names
        assert f"mav/_weights/shapes/{component}/config.json" in names
    assert "mav/_weights/shapes/model_index.json" in names
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "mav").rglob("*.py")}
    assert modules <= names, sorted(modules - names)  # a new subpackage must be listed in pyproject.toml
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(target))
    probe = "import mav.hub as h; print(h.resolve_model(None))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == target / "mav" / "_weights" / "shapes"
