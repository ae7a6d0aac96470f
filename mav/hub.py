"""Where a model comes from (DESIGN §3): `resolve_model` turns what the user typed (a built-in name, a model folder
or a Hub id `owner/name[@revision]`) into a model folder, downloading a Hub model through huggingface_hub's cache;
`pull` fills that cache. Reading a folder is `mav.loading`'s, writing one `mav.saving`'s.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mav.checks import first_line
from mav.errors import ModelError, UsageError
from mav.loading import CONFIG_FILE, HISTORY_FILE, INDEX_FILE, WEIGHTS_FILE, check_model_folder

# what `mav pull` fetches: the index, each component's config, weights and training history, and what an imported
# model carries beside them (its licence files, imported.json); nothing else in a Hub repo is ever read
HUB_PATTERNS = [INDEX_FILE, f"*/{CONFIG_FILE}", f"*/{WEIGHTS_FILE}", f"*/{HISTORY_FILE}", "LICENSE*",
                "imported.json"]

# Built-in models: name → folder under `weights/` in a checkout, or `mav/_weights/` in an installed package.
REGISTRY: dict[str, Path] = {"shapes": Path("shapes")}
DEFAULT_MODEL = "shapes"

_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<revision>[^\s@]+))?")


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
