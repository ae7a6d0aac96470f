"""Errors before work: every mistake that needs no model is answered before torch is imported, with the documented
exit code and a one-line message; a model folder is checked from its configs and safetensors headers first; and
requests the model or the machine cannot serve are refused before the model loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mav import checks
from mav.errors import MediaError, OutOfMemory, UsageError

# Run in a fresh interpreter, one `mav.cli.run` per case, reporting exit code, message and whether torch was
# imported by then (the test process itself has torch loaded already).
PROBE = """
import contextlib, io, json, os, sys
from mav.cli import run
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run(argv)
    out.append({"code": code, "err": err.getvalue().strip(), "torch": "torch" in sys.modules})
print(json.dumps(out))
"""


def probe(cases: list[list[str]], cwd: Path) -> list[dict]:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], cwd=cwd, capture_output=True,
                            text=True, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return json.loads(result.stdout)


@pytest.fixture
def world(tmp_path, tiny_model, media):
    """Inputs of every kind a user gets wrong, and damaged copies of the tiny model."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder-with-a-file").mkdir()
    (tmp_path / "folder-with-a-file" / "keep.txt").write_text("mine")
    (tmp_path / "empty-data").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    (tmp_path / "exists.mp4").write_bytes(b"precious")
    shutil.copytree(tiny_model, tmp_path / "no-index")
    (tmp_path / "no-index" / "model_index.json").unlink()
    shutil.copytree(tiny_model, tmp_path / "no-decoder")
    shutil.rmtree(tmp_path / "no-decoder" / "decoder")
    shutil.copytree(tiny_model, tmp_path / "truncated")
    weights = tmp_path / "truncated" / "decoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    from mav.media import Video, read_video
    from mav.media_write import save_video

    save_video(Video(read_video(media / "clip.mp4").frames[:1], 8.0), tmp_path / "one-frame.mp4")
    return tmp_path


def test_errors_come_before_torch_with_their_exit_codes(world, tiny_model, media):
    window = json.loads((tiny_model / "interpolator" / "config.json").read_text())["num_frames"]
    m = ["--model", str(tiny_model)]
    cases = [  # (argv, exit code, words of the message)
        (["generate", "x", "--seed", "-1"], 2, "--seed"),
        (["generate", "x", "--steps", "decoder=0"], 2, "--steps"),
        (["generate", "x", "--guidance-scale", "lots"], 2, "--guidance-scale"),
        (["generate", "x", "--sampler", "euler"], 2, "--sampler"),
        (["generate", "x", "--dtype", "fp64"], 2, "--dtype"),
        (["generate", "x", "--device", "tpu"], 2, "--device"),
        (["generate", "x", "--until", "nowhere"], 2, "--until"),
        (["generate", "x", "--factor", "0"], 2, "--factor"),
        (["generate", "   "], 2, "prompt is empty"),
        (["generate", "--prompts-file", "empty.txt"], 2, "no prompts"),
        (["variations", str(media / "clip.mp4"), "--strength", "2"], 2, "--strength"),
        (["animate-image", "missing.png"], 4, "not found"),
        (["animate-image", "folder"], 4, "folder"),
        (["animate-image", "text.png"], 4, "not an image"),
        (["animate-image", str(media / "clip.mp4")], 4, "is a video"),
        (["upscale", "text.mp4"], 4, "header"),
        (["interpolate", "one-frame.mp4", "--factor", "2"] + m, 4, "at least 2"),
        (["generate", "x", "-o", "exists.mp4"], 4, "--overwrite"),
        (["generate", "x", "-o", "out.xyz"], 4, "suffix"),
        (["generate", "x", "-o", "{bogus}.mp4"], 2, "{bogus}"),
        (["train", "everything", "--model", str(tiny_model)], 2, "unknown stage"),
        (["train", "clip", "--model", str(tiny_model), "--steps", "0"], 2, "steps"),
        (["train", "clip", "--model", str(tiny_model), "--data", "missing"], 4, "no such file"),
        (["train", "clip", "--model", str(tiny_model), "--data", "empty-data"], 4, "empty folder"),
        (["train", "recipe", "--preset", "bogus", "--model", "missing-folder"], 2, "unknown preset"),
        (["train", "recipe", "--run-dir", "x", "--model", "missing-folder"], 2, "--run-dir"),
        (["init", "folder-with-a-file", "--preset", "tiny"], 4, "--overwrite"),
        (["export", str(tiny_model), "out", "--dtype", "int8"], 2, "--dtype"),
        (["export", "missing-folder", "out"], 3, "missing-folder"),
        (["export", str(tiny_model), "exists.mp4"], 4, "not a folder"),
        (["push", str(tiny_model), "not an id", "--dry-run"], 2, "owner/name"),
        (["push", "no-index", "me/name", "--dry-run"], 3, "model_index.json"),
        (["generate", "x", "--model", "missing-folder"], 3, "missing-folder"),
        (["generate", "x", "--model", "no-index"], 3, "model_index.json"),
        (["generate", "x", "--model", "no-decoder"], 3, "decoder"),
        (["generate", "x", "--model", "truncated"], 3, "truncated"),
        (["generate", "x", "--factor", str(window)] + m, 2, f"at most {window - 1}"),
        (["generate", "x", "--num-frames", "10000000", "--device", "cpu"] + m, 5, "mav extrapolate"),
        (["extrapolate", str(media / "clip.mp4"), "--frames", "100000000", "--device", "cpu"] + m, 5, "--frames"),
    ]
    if Path("/proc/self").is_dir():  # a folder no one can create files in, root included
        cases.append((["generate", "x", "-o", "/proc/nope/out.mp4"], 4, "cannot write"))
    before = set(world.rglob("*"))
    results = probe([argv for argv, _, _ in cases], world)
    for (argv, code, words), got in zip(cases, results):
        assert (got["code"], got["torch"]) == (code, False), (argv, got)
        assert got["err"].startswith("mav: error: ") and "\n" not in got["err"] and words in got["err"], (argv, got)
    assert set(world.rglob("*")) == before  # no output, no temporary file


def test_info_reads_headers_without_torch(tiny_model, tmp_path):
    (got,) = probe([["info", "--model", str(tiny_model), "--json"]], tmp_path)
    assert got == {"code": 0, "err": "", "torch": False}


def test_python_api_gets_the_same_messages(tiny_model, media):
    from mav.pipeline import Pipeline

    pipe = Pipeline.load(tiny_model)
    window = pipe.models["interpolator"].config.num_frames
    with pytest.raises(UsageError, match="--seed must be in"):
        pipe.generate("x", seed=-1)
    with pytest.raises(UsageError, match=f"at most {window - 1}"):
        pipe.generate("x", interpolation_factor=window)
    with pytest.raises(OutOfMemory, match="mav extrapolate"):
        pipe.generate("x", num_frames=10_000_000)
    with pytest.raises(UsageError, match="--strength"):
        pipe.variations("unused.mp4", strength=0)
    with pytest.raises(OutOfMemory, match="fewer frames"):
        pipe.extrapolate(str(media / "clip.mp4"), 100_000_000)


def test_train_on_an_existing_checkpoint_names_the_flags(tiny_model, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")
    (got,) = probe([["train", "clip", "--model", str(tiny_model), "--run-dir", str(run_dir), "--steps", "1"]],
                   tmp_path)
    assert got["code"] == 2 and "--resume" in got["err"] and "--run-dir" in got["err"] and not got["torch"]


@pytest.mark.parametrize("text, value", [
    ("7", 7), ("decoder=30,sr-low=10", {"decoder": 30, "sr_low": 10}), (5, 5), ({"prior": 2}, {"prior": 2}),
])
def test_per_stage_specs(text, value):
    assert checks.per_stage("--steps", text, int, 1) == value


@pytest.mark.parametrize("text", ["0", "decoder=0", "banana=3", "x", 2.5, {"decoder": -1}])
def test_bad_per_stage_specs(text):
    with pytest.raises(UsageError, match="--steps"):
        checks.per_stage("--steps", text, int, 1)


def test_inputs_are_told_apart_by_their_header(tmp_path, media):
    shutil.copy(media / "a.png", tmp_path / "looks-like.mp4")
    shutil.copy(media / "clip.mp4", tmp_path / "looks-like.png")
    assert checks.input_media(tmp_path / "looks-like.mp4") == "image"
    assert checks.input_media(tmp_path / "looks-like.png") == "video"
    with pytest.raises(MediaError, match="is an image"):
        checks.input_media(tmp_path / "looks-like.mp4", image=False)


def test_bf16_warning_only_where_bf16_is_emulated(monkeypatch):
    monkeypatch.setattr(checks.options, "may_have_cuda", lambda: False)
    monkeypatch.setattr(checks.options, "cpu_has_native_bf16", lambda: False)
    assert "slower than fp32" in checks.bf16_warning("bf16", "cpu")
    assert checks.bf16_warning("bf16", "cuda") is None and checks.bf16_warning("fp32", "cpu") is None
    monkeypatch.setattr(checks.options, "cpu_has_native_bf16", lambda: True)
    assert checks.bf16_warning("bf16", "auto") is None


def test_a_cpu_that_cannot_tell_its_flags_counts_as_it_is_asked(monkeypatch):
    def unreadable(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(checks.options.Path, "read_text", unreadable)
    assert checks.cpu_has_native_bf16() is True and checks.cpu_has_native_bf16(unknown=False) is False


def test_memory_estimate_grows_with_frames_and_refuses_only_what_does_not_fit(tiny_model):
    from mav import loading

    configs = loading.check_model(tiny_model)
    small = checks.unet_bytes(configs["decoder"], 8, 2)
    assert checks.unet_bytes(configs["decoder"], 16, 2) > 2 * small > 0
    checks.generation_fits(configs, num_frames=8, factor=2, batch=1, available=2**30)
    with pytest.raises(OutOfMemory, match="GiB"):
        checks.generation_fits(configs, num_frames=8, factor=2, batch=1, available=small // 4)
