"""The training loop every Make-A-Video stage shares: AdamW, warm-up, EMA, atomic checkpoints, exact resumption.

A stage plugs in a model and two functions:

    batch_fn(step, samples) -> batch            the global sample indices `samples` (a range) for this process
    loss_fn(model, batch, step) -> scalar loss  `model` is the wrapped module: call it, not its other methods

Resumption is exact because nothing depends on iterator state. With global batch B, W processes and A
micro-steps per step (b = B / (W·A) samples each), optimizer step s trains on the global samples [s·B, (s+1)·B):
rank r at micro-step m takes s·B + (m·b + i)·W + r for i < b, the positions `mav.train.datasets` streams give rank r
of W. So batch_fn must build sample j from (seed, j) alone, and loss_fn must draw its noise from the sample
indices (e.g. generators seeded with j), never from the process. The global RNGs (torch, numpy, random) are
reseeded from (seed, step, micro-step, rank) before every micro-step as well, so dropout is a function of the step.

The same code runs alone or under `torchrun --nproc_per_node=N` (see `mav.train.distributed`). Only rank 0 logs
and writes `run_dir/checkpoint.pt` (the latest; full tensors even under FSDP, so a run may resume on another
number of processes) and `run_dir/metrics.jsonl` (per log step: step, loss, lr, samples_per_s, time as Unix
seconds). Every rank reads the checkpoint to resume, so on several nodes run_dir must be on a shared filesystem.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mav import checks, files
from mav.errors import MavError, ModelError, OutOfMemory, UsageError
from mav.progress import Reporter, reporter_for
from mav.train.options import TrainConfig
from mav.train.distributed import (
    all_mean, barrier, full_tensor, gradient_sync, setup_distributed, shard_like, teardown_distributed, wrap_model,
)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
FORMAT = 1  # checkpoint layout version

BatchFn = Callable[[int, range], Any]
LossFn = Callable[[nn.Module, Any, int], Tensor]


class Trainer:
    """Trains `model` with `cfg`; `fit()` returns the EMA copy, which is what inference should load.

    `fingerprint` (JSON-like: model config, data config …) is stored in every checkpoint and must match to
    resume; the trainer adds `cfg.trajectory()` under the key "train". A parameter is trained iff it requires
    grad; `param_groups` [(params, lr_scale), …] gives some of them a scaled learning rate (0.1 for a
    pretrained part, say); the others get the full rate. `reporter` defaults to a rich bar on a terminal and
    plain lines otherwise; pass `Reporter()` for silence. `device` forces a device ("cpu"); default CUDA if any.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        run_dir: str | Path,
        batch_fn: BatchFn,
        loss_fn: LossFn,
        fingerprint: dict[str, Any],
        *,
        param_groups: list[tuple[Iterable[nn.Parameter], float]] | None = None,
        reporter: Reporter | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.cfg, self.run_dir, self.batch_fn, self.loss_fn = cfg, Path(run_dir), batch_fn, loss_fn
        self.fingerprint = {**_json_like(fingerprint), "train": cfg.trajectory()}
        scales = _lr_scales(model, param_groups)
        self.owns_group = not dist.is_initialized()
        self.rank, self.world, self.device = setup_distributed(device)
        per_step = self.world * cfg.grad_accum
        if cfg.batch_size % per_step:
            if self.owns_group:
                teardown_distributed()
            raise UsageError(
                f"batch size {cfg.batch_size} is not divisible by {self.world} processes × {cfg.grad_accum} "
                f"accumulation steps = {per_step}; use a multiple of {per_step}")
        self.micro_batch = cfg.batch_size // per_step
        self.reporter = (reporter or reporter_for(quiet=False)) if self.rank == 0 else Reporter()

        self.template = copy.deepcopy(model).to("meta")  # rebuilt on the CPU to carry the EMA weights
        self.module = model
        self.model = wrap_model(model, self.device, cfg.fsdp, reshard_after_forward=cfg.fsdp_reshard)  # changes `model` in place; names stay
        # FSDP2 replaces the parameter objects, so everything from here on goes by name.
        named = dict(self.module.named_parameters())
        self.params = {n: named[n] for n in scales}
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, p in self.params.items():
            groups.setdefault((scales[name], p.ndim >= 2), []).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": ps, "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay if decay else 0.0}
             for (scale, decay), ps in groups.items()], lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: cfg.lr_factor(step))
        self.ema = {n: p.detach().clone() for n, p in self.params.items()}
        self.autocast = cfg.bf16 and (self.device.type == "cuda"
                                      or self.device.type == "cpu" and checks.cpu_has_native_bf16(unknown=False))

    def samples(self, step: int, micro: int = 0) -> range:
        """The global sample indices this process trains on at `step`, micro-step `micro` (module docstring)."""
        b, w = self.micro_batch, self.world
        first = step * self.cfg.batch_size + micro * b * w + self.rank
        return range(first, first + b * w, w)

    def fit(self, resume: bool | str | Path | None = False) -> nn.Module:
        """Train to `cfg.steps` and return the EMA model (CPU, eval, frozen) on every rank.

        `resume`: False starts afresh (refused if run_dir holds a checkpoint), True continues from
        run_dir/checkpoint.pt, a path continues from that checkpoint file or run folder. Leaves the process
        group if it was the one to join it.
        """
        try:
            start = self._fresh() if resume is None or resume is False else self._restore(resume)
            try:
                self._train(start)
            except torch.OutOfMemoryError as err:
                raise OutOfMemory(
                    f"out of memory with {self.micro_batch} samples per micro-step on {self.device}; lower the "
                    "batch size, raise gradient accumulation, or shard the model with FSDP") from err
            return self.ema_module()
        finally:
            if self.owns_group:
                teardown_distributed()

    # ---- training ----

    def _train(self, start: int) -> None:
        cfg = self.cfg
        self.steps_done = start
        deadline = time.monotonic() + cfg.max_seconds if cfg.max_seconds else math.inf
        batches = self._batches(start)
        with self.reporter.stage("train", cfg.steps) as advance:
            advance(start, cfg.steps)
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            for step in range(start, cfg.steps):
                window_loss = window_loss + self._train_step(step, batches)
                window_steps += 1
                done = self.steps_done = step + 1
                advance(done, cfg.steps)
                out_of_time = self._out_of_time(deadline, done)
                first = step == 0  # the loss before any update, logged as step 0, so a run's early drop shows
                if first or done % cfg.log_every == 0 or done == cfg.steps or out_of_time:
                    seconds = max(time.perf_counter() - window_start, 1e-9)
                    loss = all_mean(window_loss / window_steps).item()
                    self._log(0 if first else done, loss, cfg.lr * cfg.lr_factor(step),
                              window_steps * cfg.batch_size / seconds)
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
                if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps or out_of_time:
                    self.save_checkpoint(done)
                if out_of_time and done < cfg.steps:
                    self.reporter.message(f"time limit of {cfg.max_seconds:g} s reached at step {done} of "
                                          f"{cfg.steps}: checkpoint written, --resume continues it")
                    break

    def _out_of_time(self, deadline: float, done: int) -> bool:
        """Past the time limit? Alone, every step; under torchrun every log step, all ranks agreeing (any rank's
        clock stops them all), so that the check costs no synchronisation between log steps."""
        if deadline == math.inf:
            return False
        late = time.monotonic() >= deadline
        if not dist.is_initialized():
            return late
        if done % self.cfg.log_every:
            return False
        return bool(all_mean(torch.tensor(float(late), device=self.device)).item() > 0)

    def _batches(self, start: int) -> Iterator[Any]:
        """The batches of every (step, micro-step) from `start` on, in order: built here when needed, or by
        `cfg.workers` processes ahead of the step (batch_fn is a function of the step and its samples alone, so
        both give the same batches)."""
        accum = self.cfg.grad_accum
        keys = range(start * accum, self.cfg.steps * accum)
        if not self.cfg.workers:
            return (self.batch_fn(k // accum, self.samples(k // accum, k % accum)) for k in keys)
        if "fork" not in torch.multiprocessing.get_all_start_methods():  # batch_fn is a closure: it is not pickled
            raise UsageError("--workers needs processes started by fork (Linux); use --workers 0 here")
        loader = torch.utils.data.DataLoader(
            _StepBatches(self.batch_fn, self.samples, accum), batch_size=None, sampler=keys,
            num_workers=self.cfg.workers, prefetch_factor=4, worker_init_fn=_one_thread,
            multiprocessing_context="fork", pin_memory=self.device.type == "cuda")
        return iter(loader)

    def _train_step(self, step: int, batches: Iterator[Any]) -> Tensor:
        """One optimizer step over `grad_accum` micro-batches; returns this process's mean loss (no sync)."""
        cfg = self.cfg
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            _reseed(cfg.seed, step, micro, self.rank)
            batch = _to_device(next(batches), self.device)
            with gradient_sync(self.model, micro == cfg.grad_accum - 1):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    loss = self.loss_fn(self.model, batch, step)
                if loss.ndim != 0:
                    raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
                (loss / cfg.grad_accum).backward()
            total += loss.detach().float()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self._update_ema(step + 1)
        return total / cfg.grad_accum

    @torch.no_grad()
    def _update_ema(self, done: int) -> None:
        # The warm-up keeps a short run's EMA from being mostly the random initialisation.
        decay = min(self.cfg.ema_decay, (1 + done) / (10 + done))
        for name, p in self.params.items():
            self.ema[name].lerp_(p.detach(), 1 - decay)

    def _log(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        if not math.isfinite(loss):  # the same all-reduced value on every rank, so all stop together
            raise MavError(f"training diverged: the loss is {loss} at step {step}; lower the learning rate "
                           "or lengthen the warm-up")
        if self.rank != 0:
            return
        record = {"step": step, "loss": loss, "lr": lr, "samples_per_s": samples_per_s, "time": time.time()}
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.reporter.message(
            f"step {step}/{self.cfg.steps}  loss {loss:.4f}  lr {lr:.2e}  {samples_per_s:.1f} samples/s")

    # ---- checkpoints ----

    def save_checkpoint(self, step: int) -> Path:
        """Write run_dir/checkpoint.pt atomically on rank 0 (a collective: every rank calls it)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered to rank 0's CPU
        model_state = get_model_state_dict(self.model, options=options)
        optimizer_state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        ema = {name: full_tensor(t) for name, t in self.ema.items()}
        path = self.run_dir / CHECKPOINT
        if self.rank == 0:
            save_atomic({
                "format": FORMAT, "step": step, "fingerprint": self.fingerprint, "model": model_state, "ema": ema,
                "optimizer": optimizer_state, "scheduler": self.scheduler.state_dict(), "rng": _rng_state(),
            }, path)
        barrier()  # no rank runs ahead of a checkpoint that is not yet on disk
        return path

    def _fresh(self) -> int:
        if (self.run_dir / CHECKPOINT).exists():
            raise UsageError(f"{self.run_dir} already holds a checkpoint: pass --resume to continue it, or "
                             f"--run-dir DIR to start a new run elsewhere")
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        return 0

    def _restore(self, resume: bool | str | Path) -> int:
        """Load the checkpoint `resume` names into model, EMA, optimizer, scheduler and RNGs; returns its step."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
        )

        path = self.run_dir if resume is True else Path(resume)
        if path.is_dir():
            path = path / CHECKPOINT
        if not path.is_file():
            raise UsageError(f"nothing to resume: {path} does not exist; drop the resume option to start afresh")
        ckpt = load_checkpoint(path)
        difference = _first_difference(self.fingerprint, ckpt["fingerprint"])
        if difference:
            key, here, there = difference
            raise UsageError(f"cannot resume from {path}: {key} is {here} here but {there} in the checkpoint; "
                             "use the same settings, or --run-dir DIR to start a new run elsewhere")
        if ckpt["step"] > self.cfg.steps:
            raise UsageError(f"cannot resume from {path}: it is at step {ckpt['step']}, past steps = {self.cfg.steps}")
        if set(ckpt["ema"]) != set(self.ema):
            raise UsageError(f"cannot resume from {path}: it trains other parameters than this model")
        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, ckpt["model"], options=options)
        set_optimizer_state_dict(self.model, self.optimizer, ckpt["optimizer"], options=options)
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.ema = {name: shard_like(ckpt["ema"][name], p).detach().clone() for name, p in self.params.items()}
        _set_rng_state(ckpt["rng"])
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.reporter.message(f"resuming {path} at step {ckpt['step']}")
        return ckpt["step"]

    def ema_module(self) -> nn.Module:
        """A CPU copy of the model holding the EMA weights (frozen parts and buffers as trained), in eval mode.
        A collective under FSDP: every rank calls it."""
        state = {name: full_tensor(t) for name, t in self.module.state_dict().items()}
        module = copy.deepcopy(self.template).to_empty(device="cpu")
        module.load_state_dict(state)
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name in self.ema:
                    p.copy_(full_tensor(self.ema[name]))
        return module.eval().requires_grad_(False)


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: `path` is always whole (old or new), even
    after Ctrl-C or a full disk, and no temporary file is left behind."""
    with files.atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `Trainer`, loaded with weights_only=True onto the CPU."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise ModelError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{path} is not a mav training checkpoint (format {FORMAT})")
    return ckpt


# ---- helpers ----

class _StepBatches(torch.utils.data.Dataset):
    """Item k is the batch of step k // accum, micro-step k % accum (what `Trainer._batches` loads ahead)."""

    def __init__(self, batch_fn: BatchFn, samples: Callable[[int, int], range], accum: int) -> None:
        self.batch_fn, self.samples, self.accum = batch_fn, samples, accum

    def __getitem__(self, k: int) -> Any:
        step, micro = divmod(k, self.accum)
        return self.batch_fn(step, self.samples(step, micro))


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a batch worker renders and collates; its threads would only fight the step's


def _lr_scales(model: nn.Module, param_groups: list[tuple[Iterable[nn.Parameter], float]] | None) -> dict[str, float]:
    """Name → learning-rate scale of every trained parameter."""
    names = {id(p): n for n, p in model.named_parameters()}
    scales = {n: 1.0 for n, p in model.named_parameters() if p.requires_grad}
    for params, scale in param_groups or []:
        if scale < 0:
            raise ValueError(f"lr_scale must be ≥ 0, got {scale}")
        for p in params:
            if id(p) not in names:
                raise ValueError("param_groups holds a parameter that is not in the model")
            if not p.requires_grad:
                raise ValueError(f"param_groups holds {names[id(p)]}, which is frozen (requires_grad=False)")
            scales[names[id(p)]] = scale
    if not scales:
        raise ValueError("nothing to train: every parameter of the model is frozen")
    return scales


def _reseed(seed: int, step: int, micro: int, rank: int) -> None:
    hi, lo = np.random.SeedSequence([seed, step, micro, rank]).generate_state(2)
    torch.manual_seed(int(hi) << 32 | int(lo))
    np.random.seed(int(lo))
    random.seed(int(hi))


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _json_like(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint as JSON would give it back (tuples become lists), so saved and fresh ones compare."""
    if "train" in fingerprint:
        raise ValueError("the fingerprint key 'train' is reserved for the training config")
    try:
        return json.loads(json.dumps(fingerprint))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the fingerprint must hold only JSON values: {err}") from err


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _first_difference(here: dict[str, Any], there: dict[str, Any]) -> tuple[str, str, str] | None:
    """The first dotted key whose value differs, with both values as text ("absent" when missing)."""
    a, b = _flatten(here), _flatten(there)
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in a or key not in b or a[key] != b[key]:
            show = lambda d: repr(d[key]) if key in d else "absent"  # noqa: E731
            return key, show(a), show(b)
    return None
