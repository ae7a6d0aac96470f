"""Every check that needs neither a model nor torch, so that a mistake is answered at once (in well under a
second) and before any heavy work: option values, prompts, input and output files, training options, and the
requests a model's configs say it cannot serve.

The CLI and the Python API (`Pipeline`'s modes, `mav.train`) call the same functions, so both give the same
one-line messages and exit codes (`mav.errors`). Importing this module imports neither torch nor numpy.

By kind: `mav.checks.options` (option values, prompts, training and evaluation options), `mav.checks.paths`
(input and output files) and `mav.checks.requests` (what a model or this machine cannot serve); every public name
is importable from `mav.checks` itself.
"""

from __future__ import annotations

from mav.checks.options import (DATA_FORMATS, DTYPE_NAMES, EVAL_MAX_N, GATES, MAX_SEED, SAMPLERS, SAMPLING_STAGES,
                                SR_STAGES, TRAINING_STAGES, UNTIL_STAGES, at_least, bf16_warning, cpu_has_native_bf16,
                                data_source, device_name, dtype_name, eval_count, first_line, fps, fraction, gates,
                                may_have_cuda, per_stage, prompt, prompt_seeds, prompts, read_prompts, sampler, seed,
                                sr_stages, strength, training_stage, until)
from mav.checks.paths import (FRAME_PATTERN, IMAGE_SUFFIXES, STILL_SUFFIXES, VIDEO_SUFFIXES, expand_template,
                              input_media, is_folder_output, is_frames_folder, model_output, output, outputs, probe,
                              slugify, sniff, template_fields)
from mav.checks.requests import (available_memory, factor_served, frames_fit, generation_fits, input_frames,
                                 unet_bytes, video_bytes)

__all__ = [
    "MAX_SEED", "SAMPLERS", "DTYPE_NAMES", "SAMPLING_STAGES", "UNTIL_STAGES", "SR_STAGES", "TRAINING_STAGES",
    "DATA_FORMATS", "GATES", "EVAL_MAX_N", "first_line", "at_least", "fraction", "seed", "prompt_seeds", "per_stage",
    "sampler", "device_name", "dtype_name", "until", "fps", "strength", "sr_stages", "cpu_has_native_bf16",
    "bf16_warning", "may_have_cuda", "prompt", "prompts", "read_prompts", "gates", "eval_count", "training_stage",
    "data_source", "VIDEO_SUFFIXES", "IMAGE_SUFFIXES", "STILL_SUFFIXES", "FRAME_PATTERN", "sniff", "input_media",
    "probe", "is_folder_output", "is_frames_folder", "output", "model_output", "outputs", "slugify", "expand_template",
    "template_fields", "factor_served", "input_frames", "unet_bytes", "video_bytes", "frames_fit", "available_memory",
    "generation_fits",
]
