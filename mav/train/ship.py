"""Ship a trained model folder: fp16 safetensors, configs, training history, and a summary of the metrics.

    python -m mav.train.ship MODEL_DIR DEST_DIR

Reads each stage's `metrics.jsonl` from MODEL_DIR.runs/STAGE (where `mav train` keeps them) and writes
DEST_DIR/metrics_summary.json: per stage, steps, batch size, wall time, throughput, and the loss at the start (step 0,
before any update) and at the end (the mean of the last few logged steps).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mav import files
from mav.train.loop import METRICS
from mav.train.options import default_run_dir
from mav.train.stages import HISTORY_FILE, ORDER, STAGE_SPECS, history

WINDOW = 5  # logged steps averaged for the first and last loss


def summarize(folder: Path, previous: dict | None = None) -> dict:
    """Per stage, in training order, one entry per run (a resumed run counts once, at its final step): what the
    history recorded plus figures from that run's metrics.jsonl. A run whose metrics.jsonl is not on this machine
    (a component trained elsewhere and kept) takes its figures from `previous`, the summary it was shipped with."""
    out: dict[str, list[dict]] = {}
    previous = previous or {}
    for stage in ORDER:
        records = [h for h in history(folder, STAGE_SPECS[stage].component) if h.get("stage") == stage]
        runs: dict[str, dict] = {}  # by run folder: a resumed run's later record replaces its earlier one
        for record in records:
            run_dir = str(record.get("run_dir", default_run_dir(folder, stage)))
            entry = {k: record.get(k) for k in ("steps", "batch_size", "seconds", "data", "seed")}
            seconds = sum(r.get("seconds") or 0 for r in records if str(r.get("run_dir")) == run_dir)
            entry["seconds"] = round(seconds, 1)
            metrics_file = Path(run_dir) / METRICS
            if metrics_file.is_file():
                rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
                if rows:
                    last = rows[-WINDOW:]
                    # step 0 is the loss before any update; older logs start at their first logged window
                    entry["loss_start"] = round(rows[0]["loss"], 5)
                    entry["loss_start_step"] = rows[0]["step"]
                    entry["loss_end"] = round(sum(r["loss"] for r in last) / len(last), 5)
                    entry["samples_per_s"] = round(sum(r["samples_per_s"] for r in rows) / len(rows), 1)
            else:
                key = ("steps", "batch_size", "seed", "seconds")
                entry = next((dict(old) for old in previous.get(stage, [])
                              if all(old.get(k) == entry[k] for k in key)), entry)
            runs[run_dir] = entry
        if runs:
            out[stage] = list(runs.values())
    return out


def ship(folder: Path, dest: Path) -> Path:
    """Copy `folder` to `dest` with fp16 weights (loaded back as float32), its configs and histories."""
    import torch
    from safetensors.torch import load_file, save_file

    from mav.hub import load_index

    index = load_index(folder)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = files.sibling(dest, "partial")
    staging.mkdir()
    try:
        shutil.copy2(folder / "model_index.json", staging / "model_index.json")
        if (folder / "TRAINING.md").is_file():  # how it was trained, written by hand beside the weights
            shutil.copy2(folder / "TRAINING.md", staging / "TRAINING.md")
        for component in index.components:
            (staging / component).mkdir()
            for name in ("config.json", HISTORY_FILE):
                if (folder / component / name).is_file():
                    shutil.copy2(folder / component / name, staging / component / name)
            weights = folder / component / "model.safetensors"
            if weights.is_file():
                tensors = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
                           for k, v in load_file(weights).items()}
                save_file(tensors, staging / component / "model.safetensors")
        shipped_with = folder / "metrics_summary.json"
        previous = json.loads(shipped_with.read_text()) if shipped_with.is_file() else None
        (staging / "metrics_summary.json").write_text(json.dumps(summarize(folder, previous), indent=2) + "\n")
        files.replace_folder(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m mav.train.ship MODEL_DIR DEST_DIR")
    print(ship(Path(sys.argv[1]), Path(sys.argv[2])))
