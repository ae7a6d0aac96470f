"""Evaluation on the shapes world: a pixel judge (`judge`), the measures (`metrics`), the
evaluation run (`run`), the per-stage gates (`gates`), tables (`report`).

    from mav.eval import evaluate, score_videos
    report = evaluate(mav.load_pipeline("shapes"), n=16, seed=0)
"""

from mav.eval.judge import judge_frame, judge_video
from mav.eval.metrics import psnr, score_videos
from mav.eval.run import evaluate

__all__ = ["evaluate", "score_videos", "psnr", "judge_video", "judge_frame"]
