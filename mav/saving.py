"""Writing a model folder (DESIGN §3): each file under a temporary name and renamed into place, so a reader never
sees half a file; `init_model` writes a whole randomly initialised model from a preset."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mav import files
from mav.config import COMPONENTS, CONFIG_CLASSES, ClipConfig, ModelIndex, config_to_dict
from mav.errors import MediaError
from mav.loading import CONFIG_FILE, INDEX_FILE, WEIGHTS_FILE, build, check_component
from mav.presets import preset

if TYPE_CHECKING:
    import torch
    from torch import nn


# ---------------------------------------------------------------------------------------------------------------
# Writing a model folder.


def save_component(folder: str | Path, component: str, module: nn.Module) -> Path:
    """Write `module.config` to `folder/<component>/config.json` and its tensors to `model.safetensors`.

    Each file is written under a temporary name and renamed, so a reader never sees half a file. A CLIP that
    names a pretrained open_clip model writes only its config.
    """
    check_component(component)
    config = getattr(module, "config", None)
    expected = CONFIG_CLASSES[component]
    if not isinstance(config, expected):
        raise TypeError(f"{component}: module.config must be a {expected.__name__}, got {type(config).__name__}")
    target = Path(folder) / component
    target.mkdir(parents=True, exist_ok=True)
    if not (isinstance(config, ClipConfig) and not config.has_weights_file):
        write_weights(_plain_tensors(module.state_dict()), target / WEIGHTS_FILE, component)
    files.write_json(target / CONFIG_FILE, config_to_dict(config), sort_keys=True)
    return target


def save_model(folder: str | Path, index: ModelIndex, modules: Mapping[str, nn.Module]) -> Path:
    """Write `modules` (component → module, any subset of `index.components`) and then model_index.json."""
    folder = Path(folder)
    extra = [c for c in modules if c not in index.components]
    if extra:
        raise ValueError(f"components {extra} are not listed in the model index {list(index.components)}")
    folder.mkdir(parents=True, exist_ok=True)
    for component, module in modules.items():
        save_component(folder, component, module)
    files.write_json(folder / INDEX_FILE, index.to_dict(), sort_keys=True)
    return folder


def init_model(folder: str | Path, preset_name: str, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a complete randomly initialised model of preset `preset_name` to `folder`; same seed, same weights.

    The model is written to a temporary sibling folder and renamed into place, so an error or Ctrl-C leaves
    nothing behind. An existing non-empty `folder` is replaced only with `overwrite`.
    """
    import torch

    chosen = preset(preset_name)
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise MediaError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise MediaError(f"{folder} exists and is not empty; pass --overwrite to replace it")
    tmp = files.sibling(folder, "tmp")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as err:
        raise MediaError(f"cannot create {folder}: {err.strerror or err}") from None
    try:
        index = ModelIndex(components=tuple(chosen.components), defaults=chosen.defaults,
                           name=f"{preset_name} (random init, seed {seed})")
        for i, (component, config) in enumerate(chosen.components.items()):
            if isinstance(config, ClipConfig) and not config.has_weights_file:
                (tmp / component).mkdir()
                files.write_json(tmp / component / CONFIG_FILE, config_to_dict(config), sort_keys=True)
                continue
            # One seed per component, independent of the others, without touching the caller's RNG state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * len(COMPONENTS) + i)
                module = build(component, config)
            save_component(tmp, component, module)
            del module
        files.write_json(tmp / INDEX_FILE, index.to_dict(), sort_keys=True)
        files.replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _plain_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage: safetensors refuses tensors that share memory."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel() > 0:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    return tensors


def write_weights(tensors: dict[str, torch.Tensor], path: Path, component: str) -> None:
    """A component's tensors as safetensors at `path`, written atomically with a normal file's permissions and
    mav's metadata (the framework, the component)."""
    from safetensors.torch import save_file

    with files.atomic_file(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", "mav_component": component})
