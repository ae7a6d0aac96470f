"""Time to the error: how long `mav` takes to refuse each class of bad input, against `python -c "import torch"`
in the same run, and how long a successful `mav info` takes. Each command is a fresh process (what a user
waits for), timed wall-clock; the median of `--repeats` runs is reported, the kinds alternating so that drift hits
all alike. A ratio well below 1 means the answer comes before torch could even have been imported.

    python -m benchmarks.errors --repeats 5 --json benchmarks/results/errors.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import markdown_table, median, note, write_json

MAV = [sys.executable, "-m", "mav"]


def cases(work: Path, model: Path) -> list[tuple[str, list[str], int]]:
    """(label, command, expected exit code); files the commands need are made in `work`."""
    (work / "text.png").write_text("not an image")
    (work / "empty.txt").write_text("\n")
    (work / "exists.mp4").write_bytes(b"x")
    (work / "folder").mkdir(exist_ok=True)
    broken = work / "truncated"
    if not broken.exists():
        shutil.copytree(model, broken)
        weights = broken / "decoder" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-64])
    window = json.loads((model / "interpolator" / "config.json").read_text())["num_frames"]
    m = ["--model", str(model)]
    return [
        ("option value (--seed -1)", ["generate", "x", "--seed", "-1"], 2),
        ("per-stage spec (--steps decoder=0)", ["generate", "x", "--steps", "decoder=0"], 2),
        ("empty prompts file", ["generate", "--prompts-file", "empty.txt"], 2),
        ("input not an image (header)", ["animate-image", "text.png"], 4),
        ("input is a folder", ["animate-image", "folder"], 4),
        ("output exists", ["generate", "x", "-o", "exists.mp4"], 4),
        ("output folder not writable", ["generate", "x", "-o", "/proc/nope/out.mp4"], 4),
        ("training option (unknown stage)", ["train", "everything", "--model", str(model)], 2),
        ("model weights truncated (header)", ["generate", "x", "--model", "truncated"], 3),
        ("factor the model was not trained for", ["generate", "x", "--factor", str(window)] + m, 2),
        ("frames that would not fit in memory", ["generate", "x", "--num-frames", "10000000", "--device", "cpu"]
         + m, 5),
        ("mav info (success)", ["info", "--json"] + m, 0),
    ]


def timed(command: list[str], cwd: Path, expect: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    seconds = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}, expected {expect}: {done.stderr[-500:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "shapes",
                        help="A model folder (default: the embedded model).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mav-errors-") as tmp:
        work = Path(tmp)
        plan = cases(work, args.model.resolve())
        if not Path("/proc/self").is_dir():
            plan = [c for c in plan if "/proc/" not in " ".join(c[1])]
        torch_command = [sys.executable, "-c", "import torch"]
        times: dict[str, list[float]] = {"import torch": []}
        for label, _, _ in plan:
            times[label] = []
        timed(torch_command, work, 0)  # warm the file cache for both sides
        for label, argv, code in plan:
            timed(MAV + argv, work, code)
        for _ in range(args.repeats):
            times["import torch"].append(timed(torch_command, work, 0))
            for label, argv, code in plan:
                times[label].append(timed(MAV + argv, work, code))
    torch_s = median(times["import torch"])
    rows = [{"case": label, "exit": code, "seconds": median(times[label]), "ratio": median(times[label]) / torch_s}
            for label, _, code in plan]
    rows.append({"case": "python -c 'import torch'", "exit": 0, "seconds": torch_s, "ratio": 1.0})
    print(markdown_table(["case", "exit", "seconds (median)", "÷ import torch"],
                         [[r["case"], r["exit"], f"{r['seconds']:.2f}", f"{r['ratio']:.2f}"] for r in rows]))
    note(f"{args.repeats} runs each, alternating; fresh processes")
    write_json(args.json, "errors", args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
