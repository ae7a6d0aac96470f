"""Model folders (DESIGN §3): find one, read it strictly, write it atomically.

A model is a folder holding `model_index.json` and one sub-folder per component with `config.json` +
`model.safetensors`. `resolve_model` turns what the user typed (a built-in name, a folder or a Hub id) into such a
folder; `load_component` rebuilds one component from it; `save_model` / `init_model` write one.

torch is imported inside the functions that need it, so resolving or describing a model stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mav.config import (COMPONENTS, CONFIG_CLASSES, ClipConfig, ComponentConfig, ModelIndex, config_from_dict,
                        config_to_dict, preset)
from mav import files
from mav.checks import first_line
from mav.errors import MediaError, ModelError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

INDEX_FILE = "model_index.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# What `snapshot_download` fetches: nothing else in a Hub repo is ever read.
# what `mav pull` fetches: the index, each component's config, weights and training history, and what an imported
# model carries beside them (its licence files, imported.json)
HUB_PATTERNS = [INDEX_FILE, f"*/{CONFIG_FILE}", f"*/{WEIGHTS_FILE}", "*/training.json", "LICENSE*", "imported.json"]
# Weight formats other tools write; named in the error so the user knows why they are ignored.
FOREIGN_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.npz", "*.h5")

# Built-in models: name → folder under `weights/` in a checkout, or `mav/_weights/` in an installed package.
REGISTRY: dict[str, Path] = {"shapes": Path("shapes")}
DEFAULT_MODEL = "shapes"

_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<revision>[^\s@]+))?")
_SHOWN_KEYS = 5  # how many bad tensor names an error message lists


# ---------------------------------------------------------------------------------------------------------------
# Finding a model folder.


def default_model_name() -> str:
    """The built-in model used when no `--model` is given."""
    return DEFAULT_MODEL


def registry_path(name: str) -> Path | None:
    """The folder of built-in model `name`, or None when this copy of mav does not ship it."""
    if name not in REGISTRY:
        return None
    candidates = [Path(__file__).resolve().parents[1] / "weights" / REGISTRY[name]]
    try:
        from importlib.resources import files

        candidates.append(Path(str(files("mav").joinpath("_weights", str(REGISTRY[name])))))
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    for folder in candidates:
        if (folder / INDEX_FILE).is_file():
            return folder
    return None


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """`owner/name[@revision]` → (repo_id, revision), or None when `spec` does not have that shape."""
    match = _HUB_ID.fullmatch(spec)
    if match is None:
        return None
    repo = match["repo"]
    # The Hub's own rules (huggingface_hub.utils.validate_repo_id), checked here so a bad id never reaches it.
    if len(repo) > 96 or "--" in repo or ".." in repo or repo.endswith((".git", "-", ".")):
        return None
    if any(part.endswith(("-", ".")) for part in repo.split("/")):
        return None
    return repo, match["revision"]


def resolve_model(spec: str | None, *, revision: str | None = None, offline: bool = False,
                  cache_dir: str | Path | None = None) -> Path:
    """The model folder that `spec` names; raise ModelError naming the spec and what to do.

    In this order: None → the built-in default; a built-in name (`REGISTRY`; write `./name` for a local folder
    of the same name); an existing folder; a Hub id `owner/name[@revision]`, downloaded to (or, offline, found
    in) the Hugging Face cache. `revision` pins a Hub branch, tag or commit.
    """
    if spec is None:
        return _builtin(default_model_name(), revision, default=True)
    if spec in REGISTRY:
        return _builtin(spec, revision, default=False)
    path = Path(spec).expanduser()
    if os.path.isdir(path):
        if revision is not None:
            raise UsageError(f"--revision applies to Hub ids only, not to the folder {spec}")
        return check_model_folder(path)
    if path.exists():
        raise ModelError(f"{spec} is a file; a model is a folder with {INDEX_FILE}")
    hub = parse_hub_id(spec)
    if hub is None:
        names = ", ".join(REGISTRY) or "none"
        raise ModelError(f"model {spec!r} is not a folder, a built-in model ({names}) "
                         f"or a Hub id OWNER/NAME[@REVISION]")
    return _download(spec, *hub, revision=revision, offline=offline, cache_dir=cache_dir)


def pull(spec: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Download Hub model `spec` (`owner/name[@revision]`) into the cache; return its snapshot folder."""
    hub = parse_hub_id(spec)
    if hub is None:
        raise UsageError(f"mav pull takes a Hub id OWNER/NAME[@REVISION], got {spec!r}")
    return _download(spec, *hub, revision=revision, offline=False, cache_dir=cache_dir)


def check_model_folder(folder: str | Path) -> Path:
    """`folder` if it holds a model_index.json, else ModelError saying what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    if not (folder / INDEX_FILE).is_file():
        raise ModelError(f"{folder} is not a mav model folder: {INDEX_FILE} is missing "
                         f"(create one with `mav init DIR`)")
    return folder


def _builtin(name: str, revision: str | None, default: bool) -> Path:
    if revision is not None:
        raise UsageError(f"--revision applies to Hub ids only, not to the built-in model {name!r}")
    folder = registry_path(name)
    if folder is None:
        what = "no --model was given and the built-in default model" if default else "the built-in model"
        raise ModelError(f"{what} {name!r} is not installed in this copy of mav; pass --model FOLDER or "
                         f"OWNER/NAME, or create a model with `mav init DIR`")
    return folder


def _download(spec: str, repo_id: str, id_revision: str | None, *, revision: str | None, offline: bool,
              cache_dir: str | Path | None) -> Path:
    folder = snapshot(spec, repo_id, id_revision, revision=revision, offline=offline, cache_dir=cache_dir,
                      patterns=HUB_PATTERNS, again="mav pull")
    if not (folder / INDEX_FILE).is_file():
        name = f"{repo_id} at revision {revision or id_revision}" if revision or id_revision else repo_id
        raise ModelError(f"Hub repo {name} is not a mav model: it has no {INDEX_FILE}")
    return folder


def snapshot(spec: str, repo_id: str, id_revision: str | None, *, revision: str | None, offline: bool,
             cache_dir: str | Path | None, patterns: list[str], again: str) -> Path:
    """The files of Hub repo `repo_id` that match `patterns`, downloaded to (offline: found in) the Hugging Face
    cache; every failure is a one-line ModelError that names the repo and says what to do (`again`: the command
    that fetches it online)."""
    if id_revision is not None and revision is not None and id_revision != revision:
        raise UsageError(f"{spec} names revision {id_revision!r} but --revision is {revision!r}; give one")
    revision = id_revision or revision

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    offline = offline or constants.HF_HUB_OFFLINE
    name = f"{repo_id} at revision {revision}" if revision else repo_id
    pull_id = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                   local_files_only=offline, cache_dir=cache_dir)
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(f"{name} is not cached (offline); run `{again} {pull_id}` online "
                             f"or pass a folder") from None
        raise ModelError(f"could not reach the Hugging Face Hub and {name} is not cached; check the "
                         f"connection, run `{again} {pull_id}` online or pass a folder") from None
    except GatedRepoError:
        raise ModelError(f"Hub repo {repo_id} is gated; accept its terms on huggingface.co and log in "
                         f"with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise ModelError(f"no Hub repo {repo_id} (or it is private: log in with `hf auth login`); "
                         f"pass a folder or a valid OWNER/NAME") from None
    except RevisionNotFoundError:
        raise ModelError(f"Hub repo {repo_id} has no revision {revision!r}") from None
    except HFValidationError as err:
        raise ModelError(f"invalid Hub id {spec!r}: {first_line(err)}") from None
    except HfHubHTTPError as err:
        raise ModelError(f"the Hub refused {name}: {first_line(err)}") from None
    except (OSError, ConnectionError) as err:
        raise ModelError(f"could not download {name}: {first_line(err)}; run `{again} {pull_id}` "
                         f"again or pass a folder") from None
    return Path(folder)


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
    _check_component(component)
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
            skeleton = _build(component, config)
        _check_keys({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, header, path, config)
        del skeleton
        tensors = _read_weights(folder / component)
        with _parameters_on_meta():
            module = _build(component, config)
        module.load_state_dict(tensors, strict=True, assign=True)
        left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if left:  # only a module that creates parameters outside register_parameter gets here
            raise ModelError(f"{component}: tensors {', '.join(left[:_SHOWN_KEYS])} were not loaded")
    module.to(device=device, dtype=dtype or torch.float32)
    module.eval()
    module.requires_grad_(False)
    return module


def _build(component: str, config: ComponentConfig) -> nn.Module:
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


def _check_component(component: str) -> None:
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


# ---------------------------------------------------------------------------------------------------------------
# Writing a model folder.


def save_component(folder: str | Path, component: str, module: nn.Module) -> Path:
    """Write `module.config` to `folder/<component>/config.json` and its tensors to `model.safetensors`.

    Each file is written under a temporary name and renamed, so a reader never sees half a file. A CLIP that
    names a pretrained open_clip model writes only its config.
    """
    _check_component(component)
    config = getattr(module, "config", None)
    expected = CONFIG_CLASSES[component]
    if not isinstance(config, expected):
        raise TypeError(f"{component}: module.config must be a {expected.__name__}, got {type(config).__name__}")
    target = Path(folder) / component
    target.mkdir(parents=True, exist_ok=True)
    if not (isinstance(config, ClipConfig) and not config.has_weights_file):
        tensors = _plain_tensors(module.state_dict())
        with files.atomic_file(target / WEIGHTS_FILE) as tmp:
            _save_safetensors(tensors, tmp, component)
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
                module = _build(component, config)
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


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path, component: str) -> None:
    from safetensors.torch import save_file

    save_file(tensors, path, metadata={"format": "pt", "mav_component": component})
