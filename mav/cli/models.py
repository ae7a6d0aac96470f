"""Model management: `init` (a random model folder from a preset), `import` (open text-to-image weights),
`pull`, `info`, `export` (a copy to share, with a model card) and `push` (to the Hugging Face Hub)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mav import checks
from mav.cli.app import CacheOpt, JsonOpt, ModelOpt, OfflineOpt, OverwriteOpt, QuietOpt, RevisionOpt, app
from mav.convert import IMAGE_ENCODER
from mav.errors import UsageError


@app.command()
def init(
    folder: Annotated[str, typer.Argument(help="The model folder to create.")],
    preset: Annotated[str, typer.Option(help="A named config: tiny (runs in seconds on a CPU) or small.")] = "tiny",
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a complete, randomly initialised model folder (all six components)."""
    from mav import saving
    from mav.presets import preset as get_preset

    get_preset(preset)
    checks.model_output(folder, overwrite)  # before torch: an existing folder or a file in the way
    print(saving.init_model(Path(folder), preset, seed=seed, overwrite=overwrite))


@app.command("import", epilog="Examples:\n\n  mav import kakaobrain/karlo-v1-alpha -o karlo-video --dtype fp16\n\n"
                              "  mav import ./karlo-v1-alpha -o karlo-video --image-encoder ./karlo-image-variations "
                              "--offline")
def import_(
    source: Annotated[str, typer.Argument(help="An unCLIP text-to-image model in the diffusers layout: a Hub id "
                                               "OWNER/NAME[@REVISION] or a local folder.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The mav model folder to write.")],
    image_encoder: Annotated[str, typer.Option(help="Where C_y's image tower comes from: a transformers CLIP "
                                                    "image encoder (a folder or Hub id, its image_encoder/ "
                                                    "sub-folder or itself).")] = IMAGE_ENCODER,
    dtype: Annotated[str, typer.Option(help="fp32 | fp16 | bf16: the dtype the weights are written in.")] = "fp32",
    frames: Annotated[int, typer.Option(help="D^t's window: base frames per clip.")] = 8,
    revision: RevisionOpt = None, offline: OfflineOpt = False, cache_dir: CacheOpt = None,
    overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
) -> None:
    """Import an open text-to-image model (Karlo, unCLIP) and inflate it into a mav video model: prior, decoder
    and super-resolution keep their weights, the new temporal layers start as the identity (so every frame is
    the image model's until `mav train decoder-video` teaches it motion)."""
    # 1. check every input before torch is imported
    checks.dtype_name(dtype)  # the dtype the weights are stored in, not computed in
    checks.at_least("--frames", frames, 1)
    checks.model_output(output, overwrite)
    # 2. fetch, convert, inflate, write
    from mav.convert.unclip import ImportOptions, import_unclip
    from mav.progress import reporter_for

    reporter = reporter_for(quiet)
    options = ImportOptions(revision=revision, offline=offline, cache_dir=cache_dir, image_encoder=image_encoder,
                            dtype=dtype, num_frames=frames)
    print(import_unclip(source, output, options, overwrite=overwrite, progress=reporter.message))


@app.command()
def pull(
    model_id: Annotated[str, typer.Argument(help="Hub id owner/name[@revision].")],
    revision: RevisionOpt = None, cache_dir: CacheOpt = None,
) -> None:
    """Download a hub model into the local cache (only the files mav reads)."""
    from mav import hub

    print(hub.pull(model_id, revision=revision, cache_dir=cache_dir))


@app.command()
def info(
    model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False, cache_dir: CacheOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a model's components, parameter counts, configs and defaults."""
    from mav import hub, loading

    folder = hub.resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
    data = loading.model_info(folder)
    if json_out:
        print(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"model: {folder}")
    table = Table("component", "parameters", "config")
    for name, comp in data.get("components", {}).items():
        params = comp.get("parameters")
        config = comp.get("config", {})
        summary = ", ".join(f"{k}={v}" for k, v in config.items() if k != "diffusion" and not isinstance(v, dict))
        table.add_row(name, f"{params:,}" if isinstance(params, int) else "-", summary[:120])
    console.print(table)
    if data.get("skipped"):
        console.print(f"missing components (their stages are skipped): {', '.join(data['skipped'])}")
    console.print(f"defaults: {json.dumps(data.get('defaults', {}))}")



@app.command(epilog="Examples:\n\n  mav export m m-release\n\n"
                    "  mav export shapes shapes-fp32 --dtype fp32 --name shapes")
def export(
    model: Annotated[str, typer.Argument(help="The model to export: a model folder, registry name or hub id.")],
    dest: Annotated[str, typer.Argument(help="The folder to write.")],
    dtype: Annotated[str, typer.Option(help="fp16 | bf16 | fp32: the dtype the weights are written in.")] = "fp16",
    name: Annotated[Optional[str], typer.Option(help="The model's name in model_index.json and its card.")] = None,
    licence: Annotated[Optional[str], typer.Option("--license", help="The card's licence tag, e.g. mit or "
                                                   "apache-2.0 (default: an imported model's own, else none).")]
    = None,
    revision: RevisionOpt = None, offline: OfflineOpt = False, cache_dir: CacheOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a copy of a model to share: weights in fp16 (or --dtype), configs, training histories, a summary
    of the training runs and a model card (README.md), ready for `mav push`."""
    from mav import hub
    from mav.export import export_model

    # 1. check every input before torch is imported (export_model checks the dtype and the model folder first)
    for option, value in (("--name", name), ("--license", licence)):
        if value is not None and not value.strip():
            raise UsageError(f"{option} must not be empty")
    target = checks.model_output(dest, overwrite)
    folder = hub.resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
    if target.absolute().resolve() == folder.resolve():
        raise UsageError(f"{dest} is the model being exported; write the copy to another folder")
    # 2. cast, copy, write the card
    print(export_model(folder, target, dtype=dtype, name=name, licence=licence))


@app.command(epilog="Examples:\n\n  mav push m-release me/shapes-video --dry-run\n\n"
                    "  mav push m-release me/shapes-video")
def push(
    folder: Annotated[str, typer.Argument(help="The model folder to upload (as `mav export` writes it).")],
    repo_id: Annotated[str, typer.Argument(help="The Hub model repo owner/name (created if need be).")],
    revision: Annotated[Optional[str], typer.Option(help="The branch to commit to (default: main).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    message: Annotated[Optional[str], typer.Option(help="The commit message.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be uploaded and stop; touches no "
                                          "network.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Upload a model folder to the Hugging Face Hub in one commit (huggingface_hub's upload_folder): the files
    mav reads, the model card, the training notes and summary."""
    from mav import hub, loading
    from mav.export import CARD_FILE, push as push_folder, upload_plan

    # 1. check every input before any upload
    if hub.parse_hub_id(repo_id) is None or "@" in repo_id:
        raise UsageError(f"the repo id must be owner/name, got {repo_id!r}")
    path = Path(folder)
    loading.check_model(path)  # the index (so the folder itself), every config, every weights header
    plan = upload_plan(path)
    if not (path / CARD_FILE).is_file():
        print(f"mav: warning: {path} has no model card ({CARD_FILE}); `mav export` writes one", file=sys.stderr)
    # 2. list, or upload
    if dry_run:
        if json_out:
            print(json.dumps({"repo_id": repo_id, "files": [{"path": p, "bytes": n} for p, n in plan],
                              "bytes": sum(n for _, n in plan)}))
        else:
            for p, n in plan:
                print(f"{p}\t{n}")
            print(f"{len(plan)} files, {sum(n for _, n in plan):,} bytes would go to {repo_id}", file=sys.stderr)
        return
    url = push_folder(path, repo_id, revision=revision, private=private, message=message)
    print(json.dumps({"repo_id": repo_id, "commit_url": url}) if json_out else url)
