"""Model management beside `pull`, `init` and `info`: `export` writes a model folder as a copy to share (weights in
fp16, bf16 or fp32, configs, training histories, a summary of the training runs, a model card) and `push` uploads
such a folder to the Hugging Face Hub with huggingface_hub's `upload_folder`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from mav import files, hub, loading
from mav.errors import UsageError

EXPORT_DTYPES = ("fp16", "bf16", "fp32")
CARD_FILE = "README.md"
SUMMARY_FILE = "metrics_summary.json"
TRAINING_NOTES = "TRAINING.md"  # how a model was trained, written by hand beside its weights
# what `push` uploads: what mav reads from a hub model, and what a reader of the model page wants beside it
PUSH_PATTERNS = [*hub.HUB_PATTERNS, CARD_FILE, TRAINING_NOTES, SUMMARY_FILE]


def export_model(folder: str | Path, dest: str | Path, *, dtype: str = "fp16", name: str | None = None) -> Path:
    """Copy the model folder `folder` to `dest` (replaced as a whole, atomically) with its weights cast to
    `dtype`, and write a model card. `name` renames the model in its model_index.json."""
    import torch
    from safetensors.torch import load_file, save_file

    from mav.train.summary import summarize

    if dtype not in EXPORT_DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    folder, dest = Path(folder), Path(dest)
    loading.check_model(folder)  # configs against weights headers, before anything is written
    index = loading.load_index(folder)
    if name is not None:
        index = replace(index, name=name)
    cast = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    dest.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = files.sibling(dest, "partial")
    staging.mkdir()
    try:
        files.write_json(staging / loading.INDEX_FILE, index.to_dict())
        for extra in [folder / TRAINING_NOTES, folder / "imported.json", *sorted(folder.glob("LICENSE*"))]:
            if extra.is_file():
                shutil.copy2(extra, staging / extra.name)
        for component in index.components:
            source = folder / component
            if not source.is_dir():
                continue
            (staging / component).mkdir()
            for part in (loading.CONFIG_FILE, "training.json"):
                if (source / part).is_file():
                    shutil.copy2(source / part, staging / component / part)
            weights = source / loading.WEIGHTS_FILE
            if weights.is_file():
                tensors = {k: (v.to(cast) if v.is_floating_point() else v).contiguous()
                           for k, v in load_file(weights).items()}
                save_file(tensors, staging / component / loading.WEIGHTS_FILE)
        previous = folder / SUMMARY_FILE
        summary = summarize(folder, json.loads(previous.read_text()) if previous.is_file() else None)
        files.write_json(staging / SUMMARY_FILE, summary)
        (staging / CARD_FILE).write_text(model_card(staging, dtype))
        files.replace_folder(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def model_card(folder: Path, dtype: str) -> str:
    """The Hub model card of an exported folder: metadata (library, task, licence, tags) as huggingface_hub
    writes it, then what the model is, its components and how to run it."""
    from huggingface_hub import ModelCard, ModelCardData

    info = loading.model_info(folder)
    index = loading.load_index(folder)
    imported = loading.read_json(folder / "imported.json") if (folder / "imported.json").is_file() else {}
    licence = imported.get("license") or ("mit" if not imported else None)
    data = ModelCardData(library_name="mav", pipeline_tag="text-to-video", license=licence,
                         tags=["make-a-video", "text-to-video", "video-diffusion"])
    rows = "\n".join(f"| {c} | {_params(meta.get('parameters'))} |" for c, meta in info["components"].items())
    lines = [
        f"# {index.name or folder.name}",
        "",
        "A Make-A-Video cascade (Singer et al. 2022) in mav's model folder format: CLIP, the prior P, the "
        "pseudo-3D decoder D^t, masked frame interpolation ↑F and the super-resolution stages SR^t_l and SR_h."
        + (f" Imported from `{imported['source']}`." if imported.get("source") else ""),
        "",
        "| component | parameters |",
        "|---|---|",
        rows,
        "",
        f"Weights: `{dtype}` safetensors, one folder per component with its `config.json`.",
        f"Sampling defaults: `{json.dumps(info.get('defaults', {}))}`.",
        "",
        "## Use",
        "",
        "    pip install mav",
        "    mav generate \"a large red circle on a blue background\" --model OWNER/NAME -o circle.mp4",
        "",
    ]
    if (folder / TRAINING_NOTES).is_file():
        lines += ["## Training", "", f"How it was trained: [{TRAINING_NOTES}]({TRAINING_NOTES}); the runs' steps, "
                  f"times and losses: [{SUMMARY_FILE}]({SUMMARY_FILE}).", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _params(count: Any) -> str:
    return f"{count:,}" if isinstance(count, int) else "-"


def upload_plan(folder: str | Path) -> list[tuple[str, int]]:
    """The files `push` uploads from `folder`, as (path in the repo, bytes): chosen by huggingface_hub's own
    filter with the same patterns `upload_folder` is given."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    folder = Path(folder)
    found = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    chosen = filter_repo_objects(found, allow_patterns=PUSH_PATTERNS, ignore_patterns=DEFAULT_IGNORE_PATTERNS)
    return [(path, (folder / path).stat().st_size) for path in chosen]


def push(folder: str | Path, repo_id: str, *, revision: str | None = None, private: bool = False,
         message: str | None = None, token: str | None = None) -> str:
    """Create the model repo `repo_id` if need be and upload the folder's files (those `upload_plan` lists) in one
    commit; returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                             allow_patterns=PUSH_PATTERNS, commit_message=message or f"Upload {Path(folder).name}")
    return str(info.commit_url)
