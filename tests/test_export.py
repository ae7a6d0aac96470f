"""`mav export` (a model folder as a copy to share, with a model card) and `mav push` (to the Hub; the tests run
its --dry-run, offline, and check that it lists exactly what huggingface_hub's upload_folder would send)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file

from mav import loading
from mav.cli import run
from mav.export import PUSH_PATTERNS, upload_plan


def mav(*args) -> int:
    return run([str(a) for a in args])


@pytest.fixture()
def exported(tiny_model, tmp_path) -> Path:
    dest = tmp_path / "release"
    assert mav("export", tiny_model, dest, "--name", "tiny release") == 0
    return dest


def test_export_writes_fp16_weights_configs_and_a_model_card(tiny_model, exported, capsys):
    source = Path(tiny_model)
    for component in loading.load_index(source).components:
        original, copy = (load_file(f / component / "model.safetensors") for f in (source, exported))
        assert original.keys() == copy.keys()
        for key, tensor in original.items():
            assert copy[key].dtype == (torch.float16 if tensor.is_floating_point() else tensor.dtype)
            torch.testing.assert_close(copy[key].float(), tensor.float().half().float())
        assert (exported / component / "config.json").read_text() == (source / component / "config.json").read_text()
    assert loading.load_index(exported).name == "tiny release"
    card = ModelCard.load(exported / "README.md")
    assert card.data.library_name == "mav" and card.data.pipeline_tag == "text-to-video"
    assert "# tiny release" in card.text and "| decoder |" in card.text
    assert json.loads((exported / "metrics_summary.json").read_text()) == {}  # a random model has no runs
    # the copy is a model mav runs
    capsys.readouterr()
    assert mav("info", "--model", exported, "--json") == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny release"


def test_export_dtypes(tiny_model, tmp_path):
    assert mav("export", tiny_model, tmp_path / "bf", "--dtype", "bf16") == 0
    assert load_file(tmp_path / "bf" / "decoder" / "model.safetensors")["conv_in.weight"].dtype == torch.bfloat16
    assert mav("export", tiny_model, tmp_path / "x", "--dtype", "int8") == 2
    assert not (tmp_path / "x").exists()


def test_export_never_replaces_without_overwrite(tiny_model, exported, tmp_path):
    before = sorted(p.relative_to(exported) for p in exported.rglob("*"))
    assert mav("export", tiny_model, exported) == 4
    assert sorted(p.relative_to(exported) for p in exported.rglob("*")) == before
    assert mav("export", tiny_model, exported, "--overwrite", "--dtype", "fp32") == 0
    assert load_file(exported / "decoder" / "model.safetensors")["conv_in.weight"].dtype == torch.float32
    assert not list(tmp_path.glob("*partial*"))
    assert mav("export", tmp_path / "no-such-model", tmp_path / "y") == 3
    assert mav("export", exported, exported, "--overwrite") == 2  # onto itself


def test_push_dry_run_lists_what_upload_folder_sends(exported, capsys, monkeypatch):
    (exported / "notes.txt").write_text("not part of the model")
    (exported / ".git").mkdir()
    (exported / ".git" / "config").write_text("[core]")
    assert mav("push", exported, "me/tiny-video", "--dry-run", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    paths = [f["path"] for f in listed["files"]]
    assert {"model_index.json", "README.md", "metrics_summary.json", "decoder/config.json",
            "decoder/model.safetensors"} <= set(paths)
    assert "notes.txt" not in paths and not any(p.startswith(".git") for p in paths)
    assert listed["bytes"] == sum((exported / p).stat().st_size for p in paths)
    # the same files huggingface_hub's upload_folder would commit with these patterns (its own listing code; its
    # check of the card's metadata asks the Hub, which the tests do not reach)
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda *args, **kwargs: None)
    operations = HfApi()._prepare_upload_folder_additions(exported, "", allow_patterns=PUSH_PATTERNS)
    assert [op.path_in_repo for op in operations] == paths == [p for p, _ in upload_plan(exported)]


def test_push_checks_before_any_upload(exported, tiny_model, tmp_path, capsys):
    assert mav("push", exported, "not a repo id", "--dry-run") == 2
    assert mav("push", exported, "me/name@main", "--dry-run") == 2
    assert mav("push", tmp_path / "absent", "me/name", "--dry-run") == 3
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "prior" / "model.safetensors").write_bytes(b"\x00" * 7)
    assert mav("push", broken, "me/name", "--dry-run") == 3
    capsys.readouterr()
    assert mav("push", tiny_model, "me/name", "--dry-run") == 0  # a folder without a card is pushed, with a warning
    assert "no model card" in capsys.readouterr().err


def test_exported_weights_are_plain_files_with_mavs_metadata(exported, tiny_model):
    from safetensors import safe_open

    path = exported / "decoder" / "model.safetensors"
    umask = os.umask(0)
    os.umask(umask)
    for written in (path, Path(tiny_model) / "decoder" / "model.safetensors"):  # by export, and by `mav init`
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' private 0600
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == {"format": "pt", "mav_component": "decoder"}


def test_card_title_licence_and_home(tiny_model, tmp_path, monkeypatch):
    nameless = tmp_path / "nameless"
    shutil.copytree(tiny_model, nameless)
    index = json.loads((nameless / "model_index.json").read_text())
    (nameless / "model_index.json").write_text(json.dumps(dict(index, name="")))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    assert mav("export", nameless, "~/release") == 0
    card = ModelCard.load(tmp_path / "home" / "release" / "README.md")
    assert card.text.lstrip().startswith("# release") and card.data.license is None
    assert mav("export", nameless, tmp_path / "mit", "--license", "mit") == 0
    assert ModelCard.load(tmp_path / "mit" / "README.md").data.license == "mit"


def test_a_refused_push_is_one_line_exit_3(exported, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert mav("push", exported, "me/tiny-video") == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("mav: error: cannot push to me/tiny-video") and "\n" not in err
