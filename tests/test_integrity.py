"""Manifests and verification: every checkpoint file's size and SHA-256, checked on load."""

from __future__ import annotations

import json

import pytest

from babel_interp.integrity import (
    CHECKPOINT_MANIFEST,
    IntegrityError,
    build_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from babel_interp.model import ModelConfig, build_model, load_model
from babel_interp.training.checkpoints import (
    CheckpointPayload,
    latest_verified_checkpoint,
    verify_checkpoint,
    write_checkpoint,
)


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = bytes(range(256)) * 9000  # spans several read chunks
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_manifest_names_each_missing_short_or_altered_file(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"a" * 100)
    (d / "sub" / "b.txt").write_text("hello", encoding="utf-8")
    (d / "c").write_text("x", encoding="utf-8")
    (d / "state.json").write_text("{}", encoding="utf-8")
    write_manifest(d, "M.json", mutable=["state.json"], extra={"step": 3})
    manifest = json.loads((d / "M.json").read_text(encoding="utf-8"))
    assert manifest["step"] == 3 and sorted(manifest["files"]) == ["a.bin", "c", "sub/b.txt"]
    assert verify_manifest(d, "M.json").ok
    (d / "a.bin").write_bytes(b"a" * 50)  # truncated
    (d / "sub" / "b.txt").write_text("HELLO", encoding="utf-8")  # same size, other content
    (d / "c").unlink()
    (d / "state.json").write_text('{"changed": 1}', encoding="utf-8")  # mutable: allowed
    v = verify_manifest(d, "M.json")
    assert not v.ok and len(v.problems) == 3
    text = v.describe()
    assert "a.bin is 50 bytes, its manifest says 100" in text
    assert "b.txt does not match its SHA-256" in text
    assert "c is missing" in text
    only = verify_manifest(d, "M.json", only=lambda rel: rel.startswith("sub/"))
    assert len(only.problems) == 1
    with pytest.raises(IntegrityError, match="failed verification"):
        v.raise_if_bad()


def test_a_missing_or_unreadable_manifest_is_a_problem_not_a_crash(tmp_path):
    assert "is missing" in verify_manifest(tmp_path, "M.json").describe()
    (tmp_path / "M.json").write_text("{oops", encoding="utf-8")
    assert "is not valid JSON" in verify_manifest(tmp_path, "M.json").describe()
    (tmp_path / "M.json").write_text("[]", encoding="utf-8")
    assert "is not a manifest" in verify_manifest(tmp_path, "M.json").describe()
    assert build_manifest(tmp_path, exclude=["M.json"])["files"] == {}


@pytest.fixture
def checkpointed(tmp_path):
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16, d_vocab=50)
    model = build_model(cfg)
    run = tmp_path / "run"
    for step in (1, 2):
        payload = CheckpointPayload(trainer_state={"step": step}, run_config={})
        write_checkpoint(run, step, model, payload, model_cfg=cfg, fsync=False)
    return run


def test_checkpoints_carry_a_manifest_and_verify(checkpointed):
    ckpt = checkpointed / "checkpoints" / "step_00000002"
    manifest = json.loads((ckpt / CHECKPOINT_MANIFEST).read_text(encoding="utf-8"))
    assert manifest["step"] == 2 and "model.safetensors" in manifest["files"]
    assert manifest["mutable"] == ["trainer_state.json"]
    assert verify_checkpoint(ckpt).ok
    assert latest_verified_checkpoint(checkpointed) == (ckpt, [])


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda c: (c / "model.safetensors").write_bytes(b"\0" * 8),
            "model.safetensors is 8 bytes",
        ),
        (lambda c: (c / CHECKPOINT_MANIFEST).unlink(), "checkpoint_manifest.json is missing"),
        (lambda c: (c / "trainer_state.json").write_text("{", "utf-8"), "is not valid JSON"),
        (lambda c: (c / "trainer_state.json").write_text('{"step": 7}', "utf-8"), "says step 7"),
        (lambda c: (c / "optimizer.pt").write_bytes(b"x"), None),  # not in this checkpoint
    ],
)
def test_latest_verified_skips_a_damaged_newest_checkpoint(checkpointed, damage, expected):
    newest = checkpointed / "checkpoints" / "step_00000002"
    damage(newest)
    found, skipped = latest_verified_checkpoint(checkpointed)
    if expected is None:
        # A file the manifest does not list is not a problem of the listed ones.
        assert found == newest and skipped == []
        return
    assert found == checkpointed / "checkpoints" / "step_00000001"
    assert [s.directory for s in skipped] == [newest]
    assert expected in skipped[0].describe()


def test_load_model_names_the_damaged_file(checkpointed):
    ckpt = checkpointed / "checkpoints" / "step_00000002"
    load_model(ckpt)  # whole: loads
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight, same size
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model.safetensors does not match its SHA-256"):
        load_model(ckpt)
