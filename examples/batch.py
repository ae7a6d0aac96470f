"""Batch generation: a prompts file in, one video per line out, a JSON log; resumable.

    python examples/batch.py examples/prompts.txt out/ --model /tmp/m --seed 0

Each line i becomes out/{i:04d}-{slug}.mp4 with seed + i, so a rerun skips the videos that exist (outputs are
written atomically, so a file that exists is finished) and produces the same video for the same line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mav
from mav.checks import slugify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path, help="one prompt per line; blank lines and # comments skipped")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--model", default=None, help="model folder, registry name or hub id")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    lines = [line.strip() for line in args.prompts.read_text().splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.jsonl"

    todo = [(i, p) for i, p in enumerate(prompts) if not (args.out / f"{i:04d}-{slugify(p)}.mp4").exists()]
    print(f"{len(prompts) - len(todo)} of {len(prompts)} already done", flush=True)
    if not todo:
        return
    pipe = mav.load_pipeline(args.model, device=args.device)  # loaded once for every prompt
    for i, prompt in todo:
        start = time.perf_counter()
        video = pipe.generate(prompt, seed=args.seed + i)
        path = mav.save_video(video, args.out / f"{i:04d}-{slugify(prompt)}.mp4")
        record = {"index": i, "prompt": prompt, "seed": args.seed + i, "path": str(path),
                  "frames": video.num_frames, "fps": video.fps, "seconds": round(time.perf_counter() - start, 2)}
        with log.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
