"""The training loop on a toy regression: it learns, resumes exactly, refuses a mismatched resume, saves
atomically, logs JSONL, and gives the same parameters under torchrun (DDP and FSDP2 over gloo) as in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from mav.errors import UsageError
from mav.progress import Reporter
from mav.train import loop
from mav.train.loop import CHECKPOINT, METRICS, Trainer, TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = {"model": {"width": 16, "depth": 2}, "data": "toy"}


# ---------------------------------------------------------------------------------------------------------------
# The toy problem: y = sin(x·a) for x ~ N(0, I₄); sample j is a function of j alone, and so is its input noise.

class Toy(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Linear(4, 16), nn.Tanh()),
            nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Dropout(dropout)),
        ])
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def make_toy(dropout: float = 0.0) -> Toy:
    torch.manual_seed(0)
    return Toy(dropout).double()


def toy_batch(step: int, samples: range) -> dict:
    xs = [torch.randn(4, generator=torch.Generator().manual_seed(j), dtype=torch.float64) for j in samples]
    x = torch.stack(xs)
    return {"x": x, "y": torch.sin(x @ torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=torch.float64))[:, None],
            "index": torch.tensor(list(samples))}


def toy_loss(model: nn.Module, batch: dict, step: int) -> torch.Tensor:
    noise = torch.stack([torch.randn(4, generator=torch.Generator().manual_seed(10_000 + int(j)),
                                     dtype=torch.float64) for j in batch["index"]])
    return nn.functional.mse_loss(model(batch["x"] + 0.05 * noise), batch["y"])


def train(run_dir: Path, cfg: TrainConfig, *, resume=False, dropout: float = 0.0, loss_fn=toy_loss,
          fingerprint=FINGERPRINT, batch_fn=toy_batch) -> tuple[Trainer, nn.Module]:
    trainer = Trainer(make_toy(dropout), cfg, run_dir, batch_fn, loss_fn, fingerprint, reporter=Reporter(),
                      device="cpu")
    return trainer, trainer.fit(resume=resume)


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_close(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


# ---------------------------------------------------------------------------------------------------------------

def test_overfits_a_fixed_batch_and_logs_jsonl(tmp_path):
    fixed = toy_batch(0, range(8))
    cfg = TrainConfig(steps=60, batch_size=8, lr=1e-2, warmup_steps=5, ema_decay=0.9, log_every=10)
    trainer, ema = train(tmp_path, cfg, batch_fn=lambda step, samples: fixed)

    lines = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 10, 20, 30, 40, 50, 60]  # step 0: the loss before any update
    assert set(lines[0]) == {"step", "loss", "lr", "samples_per_s", "time"}
    initial = toy_loss(make_toy(), fixed, 0).item()
    assert lines[0]["loss"] == pytest.approx(initial, rel=1e-5)
    assert lines[-1]["loss"] < 0.2 * lines[0]["loss"]
    assert lines[1]["lr"] == pytest.approx(1e-2) and all(r["samples_per_s"] > 0 for r in lines)

    with torch.no_grad():
        assert toy_loss(ema, fixed, 0).item() < 0.2 * initial
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())
    assert all(p.device.type == "cpu" for p in ema.parameters())


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    k = 4
    cfg = TrainConfig(steps=2 * k, batch_size=4, lr=1e-2, warmup_steps=3, schedule="cosine", grad_accum=2,
                      ema_decay=0.8, checkpoint_every=k, log_every=1, grad_clip=0.5)
    whole, whole_ema = train(tmp_path / "whole", cfg, dropout=0.2)

    def crash_after_k(model, batch, step):
        if step == k:
            raise KeyboardInterrupt
        return toy_loss(model, batch, step)

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", cfg, dropout=0.2, loss_fn=crash_after_k)
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["step"] == k
    torch.manual_seed(123)  # the global RNG state must not matter
    resumed, resumed_ema = train(tmp_path / "cut", cfg, dropout=0.2, resume=True)

    assert_close(params(resumed.module), params(whole.module))
    assert_close(params(resumed_ema), params(whole_ema))
    assert not torch.allclose(params(whole_ema)["head.weight"], make_toy().head.weight)  # it did train
    assert not torch.allclose(params(whole_ema)["head.weight"], params(whole.module)["head.weight"])  # EMA ≠ raw


def test_constant_schedule_run_can_be_extended(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-2, warmup_steps=2, ema_decay=0.8, log_every=3)
    whole, whole_ema = train(tmp_path / "whole", cfg)
    train(tmp_path / "short", TrainConfig(**{**cfg.__dict__, "steps": 3}))
    longer, longer_ema = train(tmp_path / "short", cfg, resume=tmp_path / "short" / CHECKPOINT)
    assert_close(params(longer.module), params(whole.module))
    assert_close(params(longer_ema), params(whole_ema))


def test_batch_workers_train_exactly_as_the_training_process_does(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-2, warmup_steps=2, schedule="cosine", grad_accum=2,
                      ema_decay=0.8, log_every=3)
    inline, inline_ema = train(tmp_path / "inline", cfg, dropout=0.2)
    ahead, ahead_ema = train(tmp_path / "ahead", TrainConfig(**{**cfg.__dict__, "workers": 2}), dropout=0.2)
    assert_close(params(ahead.module), params(inline.module), atol=0)
    assert_close(params(ahead_ema), params(inline_ema), atol=0)


def test_time_limit_stops_with_a_checkpoint_that_resumes_exactly(tmp_path, monkeypatch):
    cfg = TrainConfig(steps=8, batch_size=4, lr=1e-2, warmup_steps=2, schedule="cosine", ema_decay=0.8,
                      log_every=100, checkpoint_every=0)
    whole, whole_ema = train(tmp_path / "whole", cfg)
    clock = iter(range(1000))  # each look at the clock is one second later; the limit falls after step 3
    monkeypatch.setattr(loop.time, "monotonic", lambda: float(next(clock)))
    limited = TrainConfig(**{**cfg.__dict__, "max_seconds": 2.5})
    cut, _ = train(tmp_path / "cut", limited)
    assert cut.steps_done == 3
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["step"] == 3
    lines = [json.loads(line) for line in (tmp_path / "cut" / METRICS).read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 3]  # the stopping step is logged
    monkeypatch.undo()
    resumed, resumed_ema = train(tmp_path / "cut", cfg, resume=True)  # the limit is not part of the trajectory
    assert resumed.steps_done == 8
    assert_close(params(resumed.module), params(whole.module))
    assert_close(params(resumed_ema), params(whole_ema))


def test_plain_progress_says_when_a_run_stopped_early():
    import io

    from mav.progress import PlainReporter

    stream = io.StringIO()
    reporter = PlainReporter(stream)
    with reporter.stage("train", 8) as advance:
        advance(3, 8)
    with reporter.stage("train", 8) as advance:
        advance(8, 8)
    first, second = stream.getvalue().splitlines()
    assert first.startswith("train: 3 of 8 steps in ") and second.startswith("train: 8 steps in ")


def test_resume_refuses_a_different_fingerprint(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=2, log_every=1)
    train(tmp_path, cfg)
    with pytest.raises(UsageError, match=r"model\.width is 32 here but 16 in the checkpoint"):
        train(tmp_path, cfg, resume=True, fingerprint={"model": {"width": 32, "depth": 2}, "data": "toy"})
    with pytest.raises(UsageError, match=r"train\.lr is 0\.001 here but 0\.0001 in the checkpoint"):
        train(tmp_path, TrainConfig(steps=2, batch_size=2, lr=1e-3), resume=True)
    with pytest.raises(UsageError, match=r"extra is 1 here but absent"):
        train(tmp_path, cfg, resume=True, fingerprint={**FINGERPRINT, "extra": 1})
    with pytest.raises(UsageError, match="already holds a checkpoint"):
        train(tmp_path, cfg)
    with pytest.raises(UsageError, match="nothing to resume"):
        train(tmp_path / "empty", cfg, resume=True)


def test_checkpoint_is_atomic_and_weights_only(tmp_path, monkeypatch):
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=2, log_every=2)
    trainer, _ = train(tmp_path, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, METRICS]
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 4 and ckpt["fingerprint"]["model"] == FINGERPRINT["model"]
    assert {"model", "ema", "optimizer", "scheduler", "rng"} <= set(ckpt)
    assert set(ckpt["ema"]) == set(ckpt["model"]) and set(ckpt["optimizer"]["state"]) == set(ckpt["model"])

    def interrupted_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(99)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, METRICS]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 4


@pytest.mark.parametrize("fields, message", [
    ({"steps": 0}, "steps must be an integer ≥ 1, got 0"),
    ({"batch_size": 0}, "batch size must be an integer ≥ 1, got 0"),
    ({"batch_size": -4}, "batch size must be an integer ≥ 1, got -4"),
    ({"lr": 0.0}, "learning rate must be > 0"),
    ({"schedule": "linear"}, "schedule must be 'constant' or 'cosine'"),
])
def test_bad_config_is_a_usage_error(fields, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**{"steps": 2, "batch_size": 4, **fields})


@pytest.mark.parametrize("native, bf16, autocast", [(True, True, True), (False, True, False), (True, False, False)])
def test_bf16_autocast_on_the_cpu_only_where_the_cpu_computes_bf16(tmp_path, monkeypatch, native, bf16, autocast):
    """--bf16 (the default) autocasts on a CPU with native bf16, where it is faster (BENCHMARKS.md §8), and never
    where bf16 would be emulated; --no-bf16 turns it off."""
    asked = []
    monkeypatch.setattr(loop.checks, "cpu_has_native_bf16", lambda unknown=True: asked.append(unknown) or native)
    trainer = Trainer(make_toy(), TrainConfig(steps=1, batch_size=2, bf16=bf16), tmp_path, toy_batch, toy_loss,
                      FINGERPRINT, reporter=Reporter(), device="cpu")
    assert trainer.autocast is autocast
    assert asked in ([False], [])  # a CPU that cannot tell counts as emulating


def test_batch_not_divisible_by_accumulation(tmp_path):
    with pytest.raises(UsageError, match=r"batch size 6 is not divisible by 1 processes × 4 accumulation steps"):
        Trainer(make_toy(), TrainConfig(steps=2, batch_size=6, grad_accum=4), tmp_path, toy_batch, toy_loss,
                FINGERPRINT, reporter=Reporter(), device="cpu")


def test_param_groups_scale_and_freeze(tmp_path):
    model = make_toy()
    model.blocks[0].requires_grad_(False)
    frozen = model.blocks[0][0].weight.detach().clone()
    cfg = TrainConfig(steps=3, batch_size=2, lr=1e-2, log_every=3)
    trainer = Trainer(model, cfg, tmp_path, toy_batch, toy_loss, FINGERPRINT, reporter=Reporter(), device="cpu",
                      param_groups=[(model.head.parameters(), 0.0)])
    head = model.head.weight.detach().clone()
    ema = trainer.fit()
    assert torch.equal(ema.blocks[0][0].weight, frozen) and torch.equal(ema.head.weight, head)
    assert not torch.equal(ema.blocks[1][0].weight, make_toy().blocks[1][0].weight)
    assert sorted(g["lr"] for g in trainer.optimizer.param_groups) == [0.0, 0.0, 1e-2, 1e-2]


# ---------------------------------------------------------------------------------------------------------------
# torchrun: 2 processes on the CPU over gloo, DDP then FSDP2 in one launch, against one process.

SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_loop import FINGERPRINT, make_toy, toy_batch, toy_loss, CFG
from mav.progress import Reporter
from mav.train.distributed import setup_distributed, teardown_distributed
from mav.train.loop import Trainer

rank, world, _ = setup_distributed("cpu")  # joined here, so each Trainer leaves the group alone
for mode in ("ddp", "fsdp"):
    cfg = CFG.__class__(**{{**CFG.__dict__, "fsdp": mode == "fsdp", "grad_accum": 2}})
    trainer = Trainer(make_toy(), cfg, {out!r} + "/" + mode, toy_batch, toy_loss, FINGERPRINT,
                      reporter=Reporter(), device="cpu")
    assert trainer.samples(1, 1) == range(cfg.batch_size + 2 * world + rank, 2 * cfg.batch_size, world)
    ema = trainer.fit()
    torch.save(ema.state_dict(), f"{out}/{{mode}}_rank{{rank}}.pt")
teardown_distributed()
"""
CFG = TrainConfig(steps=4, batch_size=8, lr=1e-2, warmup_steps=2, ema_decay=0.5, grad_clip=0.5, checkpoint_every=2,
                  log_every=2)


def test_torchrun_two_processes_match_one(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path))))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    _, single = train(tmp_path / "single", CFG)
    for mode in ("ddp", "fsdp"):
        ranks = [torch.load(tmp_path / f"{mode}_rank{r}.pt", weights_only=True) for r in (0, 1)]
        assert_close(ranks[0], ranks[1], atol=1e-12)
        assert_close(ranks[0], params(single))
        # the rank-0 checkpoint gathered full tensors, and resuming it in one process needs no more steps
        ckpt = torch.load(tmp_path / mode / CHECKPOINT, weights_only=True)
        assert ckpt["step"] == CFG.steps and ckpt["ema"]["head.weight"].shape == (1, 16)
        assert_close({k: ckpt["ema"][k] for k in ranks[0]}, ranks[0], atol=1e-12)
