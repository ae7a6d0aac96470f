"""A summary of a model's training runs, written beside an exported model (`mav export`, mav.export).

Reads each stage's `metrics.jsonl` from MODEL.runs/STAGE (where `mav train` keeps them): per stage, steps, batch
size, wall time, throughput, and the loss at the start (step 0, before any update) and at the end (the mean of the
last few logged steps).
"""

from __future__ import annotations

import json
from pathlib import Path

from mav.train.loop import METRICS
from mav.train.options import default_run_dir
from mav.train.stages import ORDER, STAGE_SPECS, history

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
