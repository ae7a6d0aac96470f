"""`mav import`: an unCLIP text-to-image model in the diffusers layout (Karlo) → a mav video model folder.

The source is a local folder or a Hub repo (`kakaobrain/karlo-v1-alpha`), read component by component: each
sub-folder's config and weights (safetensors; a `.bin` only through torch's weights-only loader, never plain
pickle). Neither diffusers nor transformers is needed. What is written:

- `clip`: open_clip's CLIP with Karlo's text encoder (`text_encoder/`) as its text tower and the image tower of a
  transformers CLIP image encoder (by default `kakaobrain/karlo-v1-alpha-image-variations`' `image_encoder/`),
  reading text and images as unCLIP does (end-of-text padding, raw projections);
- `prior`: Karlo's PriorTransformer with its scheduler;
- `decoder`: Karlo's decoder and text projection, inflated to a pseudo-3D D^t (temporal layers identity, fps
  embedding zero), sampled with its learned-range variance;
- `interpolator`: ↑F as mav's recipe starts it, D^t with 4 zero-initialised mask channels (untrained: the
  model's default interpolation factor is 1 until `mav train interpolator` has run);
- `sr_low`: Karlo's 64→256 super-resolution (super_res_first, with super_res_last for the final step), inflated
  to SR^t_l. There is no SR_h: the cascade ends at 256².

Motion comes only from training the temporal layers on unlabeled clips (`mav train decoder-video`); at import,
every frame is what the image model would draw.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mav import checks, files, hub, loading, saving
from mav.config import ClipConfig, Defaults, ModelIndex, UNetConfig
from mav.convert import IMAGE_ENCODER
from mav.device import DTYPES
from mav.errors import MediaError, ModelError, UsageError
from mav.train.stages import record_history

PIPELINE = "UnCLIPPipeline"
# the sub-folders an unCLIP pipeline must have, and what each one holds
PARTS = {"text_encoder": "the CLIP text encoder", "tokenizer": "the tokenizer", "prior": "the prior",
         "prior_scheduler": "the prior's scheduler", "decoder": "the decoder", "text_proj": "the text projection",
         "decoder_scheduler": "the decoder's scheduler", "super_res_first": "the super-resolution UNet",
         "super_res_last": "the last-step super-resolution UNet",
         "super_res_scheduler": "the super-resolution scheduler"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                "pytorch_model.bin")
# what `mav import` fetches from the Hub: configs, tokenizer files and weights (safetensors, else .bin)
HUB_PATTERNS = ["model_index.json", "README.md", "LICENSE*", "*/config.json", "*/scheduler_config.json",
                "tokenizer/*.json", "*/*.safetensors", "*/*.safetensors.index.json"]
HUB_BIN_PATTERNS = ["*/*.bin", "*/*.bin.index.json"]
# Karlo's sampling defaults (diffusers' UnCLIPPipeline): steps and guidance per stage
STEPS = {"prior": 25, "decoder": 25, "interpolator": 25, "sr_low": 7}
GUIDANCE = {"prior": 4.0, "decoder": 8.0, "interpolator": 1.0, "sr_low": 1.0}
# what the import stands in for, in the training history of each component
IMPORTED_STAGES = {"clip": "clip", "prior": "prior", "decoder": "decoder-image"}


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    revision: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    image_encoder: str = IMAGE_ENCODER  # a folder or Hub repo: image_encoder/ of it, or itself (transformers layout)
    dtype: str = "fp32"  # fp32 | fp16 | bf16: the dtype the weights are written in
    num_frames: int = 8  # D^t's window


# ---------------------------------------------------------------------------------------------------------------
# Reading the source


def source_folder(source: str, options: ImportOptions, *, what: str = "model") -> Path:
    """A local folder as it is, or a Hub repo's snapshot in the Hugging Face cache (downloaded unless offline)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if options.revision is not None and what == "model":
            raise UsageError(f"--revision applies to Hub ids only, not to the folder {source}")
        return path
    if path.exists():
        raise ModelError(f"{source} is a file; an unCLIP {what} is a folder in the diffusers layout or a Hub repo")
    parsed = hub.parse_hub_id(source)
    if parsed is None:
        raise ModelError(f"{what} {source!r} is neither a folder nor a Hub id OWNER/NAME[@REVISION]")
    revision = options.revision if what == "model" else None

    def fetch(patterns: list[str]) -> Path:
        return hub.snapshot(source, *parsed, revision=revision, offline=options.offline,
                            cache_dir=options.cache_dir, patterns=patterns, again="mav import")

    folder = fetch(HUB_PATTERNS)
    # a repo that ships a component only as .bin: fetch those too (read with torch's weights-only loader)
    lacking = [p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()
               and not any(p.glob("*.safetensors"))]
    if lacking:
        folder = fetch(HUB_PATTERNS + HUB_BIN_PATTERNS)
    return folder


def read_weights(folder: Path) -> dict[str, Tensor]:
    """A diffusers / transformers component's tensors: safetensors (one file or shards), else a `.bin` through
    `torch.load(weights_only=True)`, which refuses anything but tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        shards = sorted(set(loading.read_json(index).get("weight_map", {}).values())) if index.is_file() else []
        paths = [folder / shard for shard in shards] if shards else [folder / name]
        if not all(p.is_file() for p in paths):
            if shards:
                raise ModelError(f"{index} names shards that are missing: "
                                 f"{', '.join(p.name for p in paths if not p.is_file())}")
            continue
        state: dict[str, Tensor] = {}
        for path in paths:
            try:
                if path.suffix == ".safetensors":
                    state.update(load_file(path, device="cpu"))
                else:
                    state.update(torch.load(path, map_location="cpu", weights_only=True))
            except SafetensorError as err:
                raise ModelError(f"{path} is corrupt, truncated or not safetensors ({err})") from None
            except Exception as err:  # noqa: BLE001 - the weights-only unpickler raises several kinds
                raise ModelError(f"{path} could not be read as plain tensors ({type(err).__name__}: "
                                 f"{checks.first_line(err)})") from None
        return state
    raise ModelError(f"{folder} has no weights ({' or '.join(WEIGHT_FILES[:2])})")


def check_pipeline(folder: Path) -> None:
    """The folder is an unCLIP text-to-image pipeline with every part present; ModelError naming what is not."""
    index = loading.read_json(folder / "model_index.json")
    kind = index.get("_class_name")
    if kind == "UnCLIPImageVariationPipeline":
        raise ModelError(f"{folder} is an unCLIP image-variation model (no prior); import the text-to-image model "
                         f"(e.g. kakaobrain/karlo-v1-alpha) and pass this one as --image-encoder")
    if kind != PIPELINE:
        raise ModelError(f"{folder} is not an unCLIP model: its model_index.json names {kind!r}, not {PIPELINE}")
    for part, what in PARTS.items():
        if part not in index or not (folder / part).is_dir():
            raise ModelError(f"{folder} lacks {part}/ ({what})")


def _config(folder: Path, part: str) -> dict[str, Any]:
    name = "scheduler_config.json" if part.endswith("scheduler") else "config.json"
    return loading.read_json(folder / part / name)


def _pad_id(folder: Path, vocab_size: int) -> int:
    """The tokenizer's padding id, from its config and vocabulary (Karlo pads with end-of-text)."""
    tok = folder / "tokenizer"
    cfg = loading.read_json(tok / "tokenizer_config.json") if (tok / "tokenizer_config.json").is_file() else {}
    special = loading.read_json(tok / "special_tokens_map.json") if (tok / "special_tokens_map.json").is_file() else {}
    pad = cfg.get("pad_token") or special.get("pad_token") or "<|endoftext|>"
    pad = pad.get("content") if isinstance(pad, dict) else pad
    if pad == "<|endoftext|>":
        return vocab_size - 1
    vocab = loading.read_json(tok / "vocab.json") if (tok / "vocab.json").is_file() else {}
    if pad not in vocab:
        raise ModelError(f"the tokenizer pads with {pad!r}, which mav cannot place in CLIP's vocabulary")
    return int(vocab[pad])


# ---------------------------------------------------------------------------------------------------------------
# Converting


def convert_clip(folder: Path, image_folder: Path) -> torch.nn.Module:
    from mav.convert.clip import text_cfg, text_tensors, vision_cfg, vision_tensors
    from mav.models.clip import ClipModel

    text_config = _config(folder, "text_encoder")
    image_config = loading.read_json(image_folder / "config.json")
    text, embed, quick_gelu = text_cfg(text_config)
    vision, image_embed, image_gelu = vision_cfg(image_config)
    if (image_embed, image_gelu) != (embed, quick_gelu):
        raise ModelError(f"the image encoder ({image_embed}-wide embedding) does not pair with the text encoder "
                         f"({embed}-wide)")
    config = ClipConfig(model_cfg={"embed_dim": embed, "vision_cfg": vision, "text_cfg": text,
                                   "quick_gelu": quick_gelu},
                        text_pad_id=_pad_id(folder, text["vocab_size"]), normalize_text=False, normalize_image=False)
    clip = ClipModel(config)
    tensors = text_tensors(read_weights(folder / "text_encoder"), text["layers"])
    tensors.update(vision_tensors(read_weights(image_folder), vision["layers"]))
    missing, unexpected = clip.model.load_state_dict(tensors, strict=False)
    if unexpected or set(missing) - {"logit_scale"}:
        raise ModelError(f"the CLIP towers do not fill open_clip's CLIP: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    return clip


def convert_prior(folder: Path) -> torch.nn.Module:
    from mav.convert.prior import prior_config, prior_tensors
    from mav.convert.schedule import diffusion_config
    from mav.models.prior import DiffusionPrior

    diffusion, _ = diffusion_config(_config(folder, "prior_scheduler"), what="the prior's scheduler")
    config = dataclasses.replace(prior_config(_config(folder, "prior")), diffusion=diffusion)
    prior = DiffusionPrior(config)
    prior.load_state_dict(prior_tensors(read_weights(folder / "prior"), config.layers), strict=True)
    return prior


def _inflated(config: UNetConfig, tensors: dict[str, Tensor]) -> torch.nn.Module:
    """A SpaceTimeUNet with the converted spatial tensors; its temporal layers keep their identity start."""
    from mav.models.unet import SpaceTimeUNet, is_temporal_parameter

    model = SpaceTimeUNet(config)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    spatial = [k for k in missing if not (is_temporal_parameter(k) or k.startswith("fps_embed.")
                                          or ".fps_embed." in k)]
    if unexpected or spatial:
        raise ModelError(f"the converted UNet does not fit mav's: missing {spatial[:3]}, unexpected "
                         f"{unexpected[:3]}")
    return model


def convert_decoder(folder: Path, num_frames: int) -> torch.nn.Module:
    from mav.convert.schedule import diffusion_config
    from mav.convert.unet import decoder_config, unet_tensors

    diffusion, _ = diffusion_config(_config(folder, "decoder_scheduler"), what="the decoder's scheduler")
    config = decoder_config(_config(folder, "decoder"), _config(folder, "text_proj"), diffusion,
                            num_frames=num_frames)
    return _inflated(config, unet_tensors(config, read_weights(folder / "decoder"),
                                          read_weights(folder / "text_proj")))


def convert_super_res(folder: Path, low_res_size: int, num_frames: int) -> torch.nn.Module:
    from mav.convert.schedule import diffusion_config
    from mav.convert.unet import super_res_config, super_res_tensors

    first, last = _config(folder, "super_res_first"), _config(folder, "super_res_last")
    if {k: v for k, v in first.items() if not k.startswith("_")} != {k: v for k, v in last.items()
                                                                    if not k.startswith("_")}:
        raise ModelError("super_res_first and super_res_last have different configs; mav needs one for both")
    diffusion, _ = diffusion_config(_config(folder, "super_res_scheduler"), what="the SR scheduler")
    config = super_res_config(first, diffusion, low_res_size=low_res_size, num_frames=num_frames, last_step=True)
    return _inflated(config, super_res_tensors(config, read_weights(folder / "super_res_first"),
                                               read_weights(folder / "super_res_last")))


def convert(folder: Path, image_folder: Path, options: ImportOptions,
            progress: Callable[[str], None] = lambda message: None) -> tuple[ModelIndex, dict[str, Any]]:
    """Every component of the mav model, converted and inflated (float32), with its model index; `folder` is one
    `check_pipeline` accepted."""
    from mav.train.stages import interpolator_from_decoder

    modules: dict[str, Any] = {}
    progress("CLIP (text and image towers)")
    modules["clip"] = convert_clip(folder, image_folder)
    progress("prior P")
    modules["prior"] = convert_prior(folder)
    progress("decoder D^t (inflated)")
    decoder = convert_decoder(folder, options.num_frames)
    modules["decoder"] = decoder
    progress("interpolator ↑F (from D^t)")
    modules["interpolator"] = interpolator_from_decoder(
        decoder, dataclasses.replace(decoder.config, cond_channels=4, num_frames=2 * 4 + 1))
    progress("super-resolution SR^t_l (inflated)")
    modules["sr_low"] = convert_super_res(folder, decoder.config.sample_size, options.num_frames)
    source = loading.read_json(folder / "model_index.json")
    index = ModelIndex(components=tuple(modules),
                       defaults=Defaults(num_frames=options.num_frames, fps=7.5, interpolation_factor=1,
                                         sampler="ddpm", steps=dict(STEPS), guidance=dict(GUIDANCE)),
                       name=f"{folder.name} ({source.get('_class_name')}, imported by mav; temporal layers untrained)")
    return index, modules


def image_encoder_folder(source: str, options: ImportOptions) -> Path:
    """The transformers CLIP image encoder: `image_encoder/` of the source when it has one, else the source."""
    folder = source_folder(source, options, what="image encoder")
    sub = folder / "image_encoder"
    if (sub / "config.json").is_file():
        return sub
    if (folder / "config.json").is_file():
        return folder
    raise ModelError(f"{source} has no CLIP image encoder (image_encoder/config.json or config.json)")


def _licence(folder: Path) -> str | None:
    """The `license:` tag of the source's model card (README.md front matter), if it has one."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    lines = card.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        if line.startswith("license:"):
            return line.split(":", 1)[1].strip() or None
    return None



def import_unclip(source: str, output: str | Path, options: ImportOptions = ImportOptions(), *,
                  overwrite: bool = False, progress: Callable[[str], None] = lambda message: None) -> Path:
    """Convert `source` (folder or Hub repo) into the mav model folder `output`, written to a temporary sibling
    and renamed into place: an error leaves nothing behind, and an existing folder is replaced only with
    `overwrite`."""
    checks.dtype_name(options.dtype)
    output = checks.model_output(output, overwrite)
    folder = source_folder(source, options)
    check_pipeline(folder)
    image_folder = image_encoder_folder(options.image_encoder, options)
    index, modules = convert(folder, image_folder, options, progress)
    tmp = files.sibling(output, "tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        progress(f"writing {output} ({options.dtype})")
        for module in modules.values():
            module.to(DTYPES[options.dtype])
        saving.save_model(tmp, index, modules)
        # the image stages count as done (the next `mav train` stages build on them); ↑F and SR^t_l are not
        for component, stage in IMPORTED_STAGES.items():
            record_history(tmp, component, {"stage": stage, "imported": source, "revision": options.revision})
        # the weights' licence travels with them: the source's LICENSE file and its model card's licence tag
        for licence in sorted(folder.glob("LICENSE*")):
            shutil.copyfile(licence, tmp / licence.name)
        files.write_json(tmp / "imported.json", {"source": source, "revision": options.revision,
                                                 "image_encoder": options.image_encoder,
                                                 "license": _licence(folder), "dtype": options.dtype})
        files.replace_folder(tmp, output)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MediaError(f"cannot write {output}: {err.strerror or err}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


__all__ = ["ImportOptions", "import_unclip", "convert", "check_pipeline", "read_weights", "source_folder"]
