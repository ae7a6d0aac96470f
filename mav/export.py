"""Model management beside `pull`, `init` and `info`: `export` writes a model folder as a copy to share (weights in
fp16, bf16 or fp32, configs, training histories, a summary of the training runs, a model card) and `push` uploads
such a folder to the Hugging Face Hub with huggingface_hub's `upload_folder`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from mav import checks, files, hub, loading
from mav.errors import ModelError

CARD_FILE = "README.md"
SUMMARY_FILE = "metrics_summary.json"
TRAINING_NOTES = "TRAINING.md"  # how a model was trained, written by hand beside its weights
# what `push` uploads: what mav reads from a hub model, and what a reader of the model page wants beside it
PUSH_PATTERNS = [*hub.HUB_PATTERNS, CARD_FILE, TRAINING_NOTES, SUMMARY_FILE]
STAGE_NAMES = {"clip": "CLIP (C_x, C_y)", "prior": "the prior P", "decoder": "the pseudo-3D decoder D^t",
               "interpolator": "masked frame interpolation ↑F", "sr_low": "spatiotemporal super-resolution SR^t_l",
               "sr_high": "spatial super-resolution SR_h"}


def export_model(folder: str | Path, dest: str | Path, *, dtype: str = "fp16", name: str | None = None,
                 licence: str | None = None) -> Path:
    """Copy the model folder `folder` to `dest` (replaced as a whole, atomically) with its weights cast to
    `dtype`, and write a model card. `name` renames the model in its model_index.json; `licence` is the card's
    licence tag (default: an imported model's own, else none)."""
    folder, dest = Path(folder), Path(dest).expanduser()
    checks.dtype_name(dtype)  # a storage dtype: any of them, whatever this machine computes in
    loading.check_model(folder)  # configs against weights headers, before torch and before anything is written
    index = loading.load_index(folder)
    if name is not None:
        index = replace(index, name=name)
    from safetensors.torch import load_file

    from mav.device import DTYPES
    from mav.saving import write_weights
    from mav.train.summary import summarize

    cast = DTYPES[dtype]
    dest.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = files.sibling(dest, "partial")
    staging.mkdir()
    try:
        files.write_json(staging / loading.INDEX_FILE, index.to_dict(), sort_keys=True)
        for extra in [folder / TRAINING_NOTES, folder / "imported.json", *sorted(folder.glob("LICENSE*"))]:
            if extra.is_file():
                shutil.copy2(extra, staging / extra.name)
        for component in index.components:
            source, target = folder / component, staging / component
            target.mkdir()
            for part in (loading.CONFIG_FILE, loading.HISTORY_FILE):
                if (source / part).is_file():
                    shutil.copy2(source / part, target / part)
            if (source / loading.WEIGHTS_FILE).is_file():  # absent only for a CLIP named from open_clip
                tensors = {k: (v.to(cast) if v.is_floating_point() else v).contiguous()
                           for k, v in load_file(source / loading.WEIGHTS_FILE).items()}
                write_weights(tensors, target / loading.WEIGHTS_FILE, component)
        previous = folder / SUMMARY_FILE
        summary = summarize(folder, loading.read_json(previous) if previous.is_file() else None)
        files.write_json(staging / SUMMARY_FILE, summary)
        (staging / CARD_FILE).write_text(model_card(staging, dtype, title=index.name or dest.name, licence=licence))
        files.replace_folder(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def model_card(folder: Path, dtype: str, *, title: str, licence: str | None = None) -> str:
    """The Hub model card of an exported folder: metadata (library, task, licence, tags) as huggingface_hub
    writes it, then what the model is, its components and how to run it."""
    from huggingface_hub import ModelCard, ModelCardData

    info = loading.model_info(folder)
    imported = loading.read_json(folder / "imported.json") if (folder / "imported.json").is_file() else {}
    data = ModelCardData(library_name="mav", pipeline_tag="text-to-video", license=licence or imported.get("license"),
                         tags=["make-a-video", "text-to-video", "video-diffusion"])
    stages = ", ".join(STAGE_NAMES[c] for c in info["components"])
    rows = "\n".join(f"| {c} | {_params(meta.get('parameters'))} |" for c, meta in info["components"].items())
    lines = [
        f"# {title}",
        "",
        f"A Make-A-Video cascade (Singer et al. 2022) in mav's model folder format: {stages}."
        + (f" Imported from `{imported['source']}`." if imported.get("source") else "")
        + (f" Without {', '.join(info['skipped'])}: those stages are skipped." if info["skipped"] else ""),
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
        "With mav installed (its README has the set-up), name this repository's id or a local copy of it:",
        "",
        "    mav generate \"a large red circle on a blue background\" --model OWNER/NAME -o circle.mp4",
        "    mav info --model OWNER/NAME",
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
    """Create the model repo `repo_id` (and the branch `revision`) if need be and upload the folder's files (those
    `upload_plan` lists) in one commit; returns the commit's URL. A refusal of the Hub is a one-line ModelError."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 allow_patterns=PUSH_PATTERNS,
                                 commit_message=message or f"Upload {Path(folder).name} with mav")
    except OfflineModeIsEnabled:
        raise ModelError(f"cannot push to {repo_id}: huggingface_hub is offline (HF_HUB_OFFLINE is set)") from None
    except HfHubHTTPError as err:
        raise ModelError(f"the Hub refused the push to {repo_id}: {checks.first_line(err)} (log in with "
                         f"`hf auth login`, or pass a token with write access)") from None
    except (OSError, ConnectionError, ValueError) as err:
        raise ModelError(f"could not push to {repo_id}: {checks.first_line(err)}") from None
    return str(info.commit_url)
