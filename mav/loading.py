"""Reading a model folder (DESIGN §3) strictly: its index, each component's config, checked against its
safetensors header before any tensor is allocated, and the component rebuilt from it (`load_component`); and
describing a folder without torch (`check_model`, `model_info`).

A model is a folder holding `model_index.json` and one sub-folder per component with `config.json` +
`model.safetensors`. torch is imported inside the functions that need it, so checking or describing a model stays
fast.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mav.checks import first_line
from mav.config import COMPONENTS, ClipConfig, ComponentConfig, ModelIndex, config_from_dict, config_to_dict
from mav.errors import ModelError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

INDEX_FILE = "model_index.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "training.json"  # the training stages run on a component (mav.train.stages.record_history)
# Weight formats other tools write; named in the error so the user knows why they are ignored.
FOREIGN_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.npz", "*.h5")
_SHOWN_KEYS = 5  # how many bad tensor names an error message lists


def check_model_folder(folder: str | Path) -> Path:
    """`folder` if it holds a model_index.json, else ModelError saying what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    if not (folder / INDEX_FILE).is_file():
        raise ModelError(f"{folder} is not a mav model folder: {INDEX_FILE} is missing "
                         f"(create one with `mav init DIR`)")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Reading a model folder.


def load_index(folder: str | Path) -> ModelIndex:
    """Parse `folder/model_index.json`."""
    path = check_model_folder(folder) / INDEX_FILE
    data = read_json(path)
    try:
        return ModelIndex.from_dict(data)
    except (KeyError, TypeError, AttributeError) as err:
        raise ModelError(f"{path} is invalid: {err!r}") from None


def load_config(folder: str | Path, component: str) -> ComponentConfig:
    """Parse `folder/<component>/config.json` into the component's config dataclass."""
    check_component(component)
    path = Path(folder) / component / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing: the model has no {component} component")
    return config_from_dict(component, read_json(path))


def available_components(folder: str | Path) -> list[str]:
    """Components listed in the index whose folder has a config.json, in pipeline order.

    A component whose config is present but whose weights are missing or broken counts as available, so that
    loading it says what is wrong instead of the pipeline silently skipping a stage.
    """
    folder = Path(folder)
    index = load_index(folder)
    return [c for c in COMPONENTS if c in index.components and (folder / c / CONFIG_FILE).is_file()]


def load_component(folder: str | Path, component: str, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, *, offline: bool = False) -> nn.Module:
    """Rebuild `component` from `folder` in eval mode without gradients, on `device` in `dtype` (float32).

    Strict, and safe against a wrong or hostile config: the module is first built on the meta device (no memory)
    and its tensor names and shapes are checked against the safetensors header, so a config that disagrees with
    its weights is a ModelError naming the config fields involved before a single tensor is allocated. Only then
    are the tensors read and the module built with its parameters taken from the file. A CLIP config that names a
    pretrained open_clip model loads through open_clip.
    """
    import torch

    folder = Path(folder)
    config = load_config(folder, component)
    if isinstance(config, ClipConfig) and not config.has_weights_file:
        from mav.models.clip import ClipModel

        module = ClipModel.from_pretrained(config, offline=offline)
    else:
        path = folder / component / WEIGHTS_FILE
        header = read_header(folder / component)
        with torch.device("meta"):
            skeleton = build(component, config)
        _check_keys({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, header, path, config)
        del skeleton
        tensors = _read_weights(folder / component)
        with _parameters_on_meta():
            module = build(component, config)
        module.load_state_dict(tensors, strict=True, assign=True)
        left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if left:  # only a module that creates parameters outside register_parameter gets here
            raise ModelError(f"{component}: tensors {', '.join(left[:_SHOWN_KEYS])} were not loaded")
    module.to(device=device, dtype=dtype or torch.float32)
    module.eval()
    module.requires_grad_(False)
    return module


def build(component: str, config: ComponentConfig) -> nn.Module:
    from mav.models import build_component

    return build_component(component, config)


_LOADING = threading.local()


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """While a module is built in this thread, create its parameters on the meta device (no memory, no random
    init); buffers stay real, so that non-persistent ones (causal masks, frequency tables such as open_clip's
    `attn_mask`), which no file holds, are computed as usual. Other threads are not affected: torch's parameter
    registration hook is installed only for the duration and acts only in the thread that asked for it."""
    from torch import nn
    from torch.nn.modules.module import register_module_parameter_registration_hook

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        if getattr(_LOADING, "active", False) and param is not None and not param.is_meta:
            return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        return None

    handle = register_module_parameter_registration_hook(to_meta)
    _LOADING.active = True
    try:
        yield
    finally:
        _LOADING.active = False
        handle.remove()


def read_header(component_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from a component's safetensors header, without reading any tensor (and without torch);
    ModelError when the file is missing, not safetensors, or truncated (the header says how long it must be)."""
    return {name: shape for name, (shape, _) in _header(component_dir).items()}


def _header(component_dir: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name → (shape, dtype) from the safetensors header, checked as `read_header` says."""
    from safetensors import SafetensorError, safe_open

    path = component_dir / WEIGHTS_FILE
    _require_weights_file(component_dir)
    try:
        with safe_open(path, framework="numpy") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except SafetensorError as err:
        raise ModelError(f"{path} is corrupt, truncated or not a safetensors file ({first_line(err)})") from None
    except OSError as err:
        raise ModelError(f"cannot read {path}: {err.strerror or err}") from None


def _require_weights_file(component_dir: Path) -> None:
    path = component_dir / WEIGHTS_FILE
    if not path.is_file():
        foreign = sorted(p.name for pattern in FOREIGN_WEIGHTS for p in component_dir.glob(pattern))
        if foreign:
            raise ModelError(f"{path} is missing; found {', '.join(foreign)} instead, but only safetensors are "
                             f"read (pickled weights can run code): convert it with safetensors.torch.save_file")
        raise ModelError(f"{path} is missing")


def _read_weights(component_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = component_dir / WEIGHTS_FILE
    _require_weights_file(component_dir)
    try:
        return load_file(path, device="cpu")
    except SafetensorError as err:
        raise ModelError(f"{path} is corrupt, truncated or not a safetensors file ({first_line(err)})") from None
    except OSError as err:
        raise ModelError(f"cannot read {path}: {err.strerror or err}") from None


def _check_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], path: Path,
                config: ComponentConfig) -> None:
    """ModelError listing the first few missing, unexpected and mis-shaped tensors with their shapes, and the
    config fields whose values show up in the shapes that disagree (the likely culprits)."""
    missing = [f"{k} {list(s)}" for k, s in expected.items() if k not in found]
    unexpected = [f"{k} {list(s)}" for k, s in found.items() if k not in expected]
    misshaped = [k for k, s in expected.items() if k in found and tuple(found[k]) != tuple(s)]
    problems = [f"{label} {len(keys)}: {_some(keys)}" for label, keys in
                [("missing", missing), ("unexpected", unexpected),
                 ("mis-shaped", [f"{k} (file {list(found[k])}, config {list(expected[k])})" for k in misshaped])]
                if keys]
    if not problems:
        return
    fields = _suspect_fields(config, [expected[k] for k in misshaped], [found[k] for k in misshaped])
    hint = f"; check config field{'s' if len(fields) > 1 else ''} {', '.join(fields)}" if fields else ""
    raise ModelError(f"{path} does not match its config.json: {'; '.join(problems)}{hint}")


def _suspect_fields(config: ComponentConfig, model_shapes: list, file_shapes: list) -> list[str]:
    """Config fields (numbers, or tuples of numbers) holding a size that occurs in the config's shapes of the
    mis-shaped tensors but not in the file's."""
    if not model_shapes:
        return []
    wrong = {d for shape in model_shapes for d in shape} - {d for shape in file_shapes for d in shape}
    out = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and not isinstance(v, bool) and v > 1 and v in wrong for v in values):
            out.append(f.name)
    return out


def _some(items: list[str]) -> str:
    more = f", … and {len(items) - _SHOWN_KEYS} more" if len(items) > _SHOWN_KEYS else ""
    return ", ".join(items[:_SHOWN_KEYS]) + more


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; a missing or unreadable file, or one that holds something else, is a
    ModelError naming it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path} is not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def check_component(component: str) -> None:
    if component not in COMPONENTS:
        raise UsageError(f"unknown component {component!r}; choose one of: {', '.join(COMPONENTS)}")


# ---------------------------------------------------------------------------------------------------------------
# Describing a model folder (`mav info`).


def model_info(folder: str | Path) -> dict[str, Any]:
    """What `mav info` prints: components present and skipped, their configs, sizes and the defaults.

    Reads only JSON and safetensors headers, never the tensors, so it is quick for any model size.
    """
    folder = Path(folder)
    index = load_index(folder)
    present = available_components(folder)
    components: dict[str, Any] = {}
    for component in present:
        config = load_config(folder, component)
        entry: dict[str, Any] = {"config": config_to_dict(config)}
        if isinstance(config, ClipConfig) and not config.has_weights_file:
            entry.update(weights=f"open_clip {config.name} ({config.pretrained})", parameters=None, bytes=0)
        else:
            path = folder / component / WEIGHTS_FILE
            header = _header(folder / component)  # one read of the header for shapes and dtypes
            shapes = [shape for shape, _ in header.values()]
            dtypes = sorted({dtype for _, dtype in header.values()})
            numel = sum(_prod(s) for s in shapes)
            entry.update(weights=WEIGHTS_FILE, parameters=numel, tensors=len(shapes), dtypes=dtypes,
                         bytes=path.stat().st_size)
        components[component] = entry
    return {
        "path": str(folder),
        "name": index.name,
        "format_version": index.format_version,
        "components": components,
        "skipped": [c for c in index.components if c not in present],
        "parameters": sum(e["parameters"] or 0 for e in components.values()),
        "defaults": dataclasses.asdict(index.defaults),
    }


def check_model(folder: str | Path) -> dict[str, ComponentConfig]:
    """Everything about a model folder that can be checked without torch: its index, every listed component's
    config, and every weights file's safetensors header (present, complete). Returns the configs by component
    (a stage whose component the index does not list is skipped). Component names come from mav's fixed list, so
    nothing outside the folder is ever read."""
    folder = Path(folder)
    configs = {}
    for component in load_index(folder).components:  # every listed component must load
        config = load_config(folder, component)
        if not (isinstance(config, ClipConfig) and not config.has_weights_file):
            read_header(folder / component)
        configs[component] = config
    return configs


def _prod(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
