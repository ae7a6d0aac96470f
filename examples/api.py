"""The Python API: one pipeline, several modes.

    python examples/api.py --model /tmp/m      # a folder made by `mav init /tmp/m --preset tiny`
"""

from __future__ import annotations

import argparse

import mav


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="model folder, registry name or hub id")
    args = parser.parse_args()

    pipe = mav.load_pipeline(args.model, device="auto")

    # Text → video through the whole cascade; the same seed gives the same frames.
    video = pipe.generate("a large red circle on a blue background", seed=1)
    print(f"generated {video.num_frames} frames of {video.width}×{video.height} at {video.fps:g} fps")
    mav.save_video(video, "circle.mp4", overwrite=True)

    # Stop after the base decoder to look at D^t alone, with more steps and stronger guidance.
    base = pipe.generate("a small green triangle", seed=2, until="decoder", steps={"decoder": 50}, guidance=5.0)
    mav.save_video(base, "base.gif", overwrite=True)

    # The other modes reuse the same stages.
    longer = pipe.extrapolate("circle.mp4", 8, seed=3)
    mav.save_video(longer, "circle-longer.mp4", overwrite=True)
    for i, variant in enumerate(pipe.variations("circle.mp4", 2, strength=0.6, seed=4)):
        mav.save_video(variant, f"circle-variation-{i}.mp4", overwrite=True)


if __name__ == "__main__":
    main()
