"""The benchmark scripts keep running: each once on the tiny config with one repeat, in a subprocess with a time
limit. Their timings are not checked here (they live in BENCHMARKS.md); what they report must be well formed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a folder of scripts beside the package, not installed with it
    sys.path.insert(0, str(REPO))
HAVE_DIFFUSERS = importlib.util.find_spec("diffusers") is not None
TINY = ("--config", "tiny", "--repeats", "1", "--warmup", "1", "--threads", "1")


def bench(name: str, *args: object, tmp_path: Path, timeout: float = 120) -> tuple[dict, str]:
    """Run `python -m benchmarks.NAME ARGS --json FILE`; assert it succeeded; return the JSON and stdout."""
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *map(str, args), "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text()) if out.exists() else {}
    return data, done.stdout + done.stderr


def test_denoiser_step(tmp_path):
    data, output = bench("denoiser_step", *TINY, "--frames", "2", "--dtype", "fp32", "bf16", tmp_path=tmp_path)
    assert "| config | input b c f h w | dtype | mav params | mav ms/step |" in output
    assert [(r["frames"], r["dtype"]) for r in data["rows"]] == [(2, "fp32"), (2, "bf16")]
    for row in data["rows"]:
        assert row["mav_ms"] > 0 and row["mav_params"] > 0
        if HAVE_DIFFUSERS:
            assert row["diffusers_ms"] > 0 and row["ratio"] == pytest.approx(row["diffusers_ms"] / row["mav_ms"])
        else:
            assert "diffusers_ms" not in row
    if not HAVE_DIFFUSERS:
        assert "diffusers is not importable" in output


def test_utilisation(tmp_path):
    data, output = bench("utilisation", *TINY, "--frames", "2", "--dtype", "fp32", "--matmul-size", "128",
                         "--no-diffusers", tmp_path=tmp_path)
    assert "% of peak" in output
    (row,) = data["rows"]
    assert row["gflop_per_step"] > 0 and 0 < row["utilisation"]
    assert row["gflops"] == pytest.approx(row["gflop_per_step"] / (row["ms_per_step"] / 1e3))


def test_scaling(tmp_path):
    data, output = bench("scaling", *TINY, "--frames", "2", "--sizes", "16", tmp_path=tmp_path)
    assert "time exponent in frames" in output and "time exponent in pixels h·w" in output
    rows = data["rows"]
    assert {r["variant"] for r in rows} == {"pseudo-3D", "full 3-D attention"}
    for row in rows:
        assert "error" not in row, row
        assert row["ms"] > 0 and row["process_mib"] > 0 and row["step_mib"] >= 0


def test_end_to_end(tmp_path):
    data, output = bench("end_to_end", *TINY, "--warmup", "0", "--dtype", "fp32", tmp_path=tmp_path)
    (row,) = data["rows"]
    assert set(row["stages_s"]) == {"prior", "decoder", "interpolator", "sr_low", "sr_high"}
    assert all(seconds >= 0 for seconds in row["stages_s"].values())
    assert row["video"] == {"frames": 7, "fps": 8.0, "size": [64, 64]}  # the tiny cascade's output
    assert row["peak_rss_mib"] > 0 and row["process_s"] >= row["generate_s"] > 0
    assert "| tiny (random weights) | fp32 | 7 × 64 × 64 |" in output


def test_samplers(tmp_path):
    data, output = bench("samplers", "--config", "tiny", "--repeats", "1", "--threads", "1", "--samplers", "ddim",
                         "dpmpp", "--steps", "2", "--n", "1", tmp_path=tmp_path)
    if importlib.util.find_spec("mav.eval") is None or "skipping the sampler benchmark" in output:
        pytest.skip("mav.eval is not importable yet")
    assert [(r["sampler"], r["steps"]) for r in data["rows"]] == [("ddim", 2), ("dpmpp", 2)]
    for row in data["rows"]:
        assert row["full_accuracy"] is None or 0 <= row["full_accuracy"] <= 1


def test_profile(tmp_path):
    data, output = bench("profile_unet", *TINY, "--frames", "2", "--dtype", "fp32", "--top", "5",
                         tmp_path=tmp_path)
    (row,) = data["rows"]
    assert len(row["top_ops"]) == 5 and all(op["op"].startswith("aten::") for op in row["top_ops"])
    assert sum(row["roles_ms"].values()) == pytest.approx(row["ms_per_step"])
    assert row["roles_ms"]["conv2d in pseudo-3D conv"] > 0 and row["roles_ms"]["temporal attention"] > 0


def test_bad_option_fails_early(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.denoiser_step", "--repeats", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--repeats must be ≥ 1, got 0" in done.stderr


# ---------------------------------------------------------------------------------------------------------------
# What the numbers rest on, checked directly


def test_flop_count_includes_cpu_attention():
    from benchmarks.denoisers import count_flops

    q = torch.randn(2, 4, 16, 8)
    flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 4 * 2 * 4 * 16 * 16 * 8  # QKᵀ and AV: 2 multiply-adds per (b, h, l, m, d)


def test_full_attention_variant_mixes_frames():
    """The contrast model attends across frames from the start (pseudo-3D's temporal attention starts at zero)."""
    from benchmarks.denoisers import bench_config, mav_step, step_inputs
    from benchmarks.scaling import FullSpaceTimeAttention, full_attention_unet
    from mav.models.pseudo3d import Pseudo3DAttention

    config = bench_config("tiny")
    model = full_attention_unet(config)
    assert not any(isinstance(m, Pseudo3DAttention) for m in model.modules())
    assert any(isinstance(m, FullSpaceTimeAttention) for m in model.modules())
    for m in model.modules():  # without temporal convolutions, frames can only meet in the attention
        if hasattr(m, "temporal") and isinstance(m.temporal, torch.nn.Conv1d):
            m.temporal = None
    x, t, context = step_inputs(config, frames=3)
    changed = x.clone()
    changed[:, :, 2] += 1.0
    with torch.inference_mode():
        a, b = mav_step(model, x, t, context), mav_step(model, changed, t, context)
    assert a.shape == x.shape
    assert not torch.allclose(a[:, :, 0], b[:, :, 0])  # frame 2's change reaches frame 0


@pytest.mark.skipif(not HAVE_DIFFUSERS, reason="diffusers is not importable (the bench extra)")
def test_diffusers_configured_alike():
    from benchmarks.denoisers import bench_config, diffusers_step, diffusers_unet, step_inputs

    config = bench_config("shapes")
    model = diffusers_unet(config)
    assert tuple(model.config.block_out_channels) == config.widths
    assert model.config.layers_per_block == config.blocks_per_level
    assert model.config.cross_attention_dim == config.text_dim
    assert model.config.down_block_types == ("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D")
    assert model.config.up_block_types == ("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D")
    from diffusers.models.attention_processor import Attention

    blocks = (model.down_blocks, model.mid_block, model.up_blocks)
    attentions = [m for part in blocks for m in part.modules() if isinstance(m, Attention)]
    assert attentions and {a.heads for a in attentions} == {config.heads}
    assert model.transformer_in.proj_in.out_features == config.widths[0]
    x, t, context = step_inputs(config, frames=2)
    with torch.inference_mode():
        assert diffusers_step(model, x, t, context).shape == x.shape


def test_layouts(tmp_path):
    data, output = bench("layouts", "--dtype", "fp32", "bf16", "--conv", "1,3,8,8", "--attn", "16,2,3,4",
                         "--repeats", "1", "--warmup", "1", "--threads", "1", tmp_path=tmp_path)
    assert "Conv3d / Conv2d" in output and "3-D / 4-D" in output
    convs = [r for r in data["rows"] if r["kind"] == "temporal conv"]
    assert [r["dtype"] for r in convs] == ["fp32", "bf16"]
    assert convs[0]["max_diff (k,1) Conv2d (mav)"] < 1e-5  # the three forms compute the same thing
    assert convs[0]["max_diff (k,1,1) Conv3d"] < 1e-5
    assert all(r["4-D bias (mav)"] > 0 for r in data["rows"] if r["kind"] == "temporal attention")


def test_train_throughput_times_the_real_loop(tmp_path):
    out = tmp_path / "t.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.train_throughput", "--stages", "sr-high",
                             "--preset", "tiny", "--batch", "2", "--steps", "4", "--log-every", "1", "--procs",
                             "--fp32", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "one process samples/s" in result.stdout and "one process, fp32 samples/s" in result.stdout
    row = json.loads(out.read_text())["rows"][0]
    assert row["stage"] == "sr-high" and row["one process"] > 0 and row["one process, fp32 ×"] == 1.0


def test_sr_bound_orders_its_figures(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.sr_bound", "--sizes", "16:32", "--scenes", "2",
                             "--samples", "4"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1].split("|")
    bicubic, sample, mean = (float(v) for v in row[2:5])
    assert mean > sample  # the posterior mean beats a posterior sample (MSE halves on the ambiguous pixels)


def test_errors(tmp_path, tiny_model):
    data, output = bench("errors", "--repeats", "1", "--model", tiny_model, tmp_path=tmp_path, timeout=300)
    assert "| case | exit | seconds (median) | ÷ import torch |" in output
    assert {r["exit"] for r in data["rows"]} >= {0, 2, 3, 4, 5}
    assert all(r["seconds"] > 0 and r["ratio"] > 0 for r in data["rows"])


def test_karlo(tmp_path):
    data, output = bench("karlo", "--config", "tiny", "--frames", "2", "--dtype", "fp32", "--frame-chunk", "0", "1",
                         "--repeats", "1", "--warmup", "0", "--threads", "1", tmp_path=tmp_path)
    assert "| dtype | frames | frame chunk | step (s, median) | peak memory (GiB) |" in output
    assert [(r["frames"], r["frame_chunk"]) for r in data["rows"]] == [(2, 0), (2, 1)]
    assert all(r["median_s"] > 0 and r["peak_rss"] >= r["rss_after_build"] > 0 for r in data["rows"])


def test_interpolator_noise(tmp_path, tiny_model):
    data, output = bench("interpolator_noise", "--model", tiny_model, "-n", "2", "--t", "500", "50",
                         tmp_path=tmp_path, timeout=300)
    assert "| model | blend dB | pure noise dB | t=500 dB | t=50 dB |" in output
    (row,) = data["rows"]
    assert row["model"] == str(tiny_model) and all(row[k] > 0 for k in ("blend", "pure noise", "t=500", "t=50"))
