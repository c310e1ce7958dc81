"""Fault: damaged files on disk (truncated, bit-flipped), caught before they do harm."""
from __future__ import annotations

import json
import os

import pytest

from tests.conftest import TINY
from tests.test_faults_nonfinite import error_line
from tests.test_preempt import assert_bitwise_equal, load

RUN = [*TINY, "model=mlp", "trainer.epochs=3"]


def flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow  # several runs, a real second process or a bitwise resume
def test_damaged_last_falls_back_to_the_previous_and_resumes_to_the_same_result(hpml, tmp_path):
    assert hpml("train", *RUN, "run_dir=full").rc == 0
    assert hpml("train", *RUN, "trainer.keep_checkpoints=2", "run_dir=part").rc == 0
    ckpt = tmp_path / "part/checkpoints"
    assert (ckpt / "last.pt.sha256").read_text().split()[1] == "last.pt"
    assert load(ckpt / "last.1.pt")["epoch"] == 2 and (ckpt / "last.1.pt.sha256").is_file()
    assert not (ckpt / "last.2.pt").exists()  # K=2: last.pt and one older
    flip_byte(ckpt / "last.pt", os.path.getsize(ckpt / "last.pt") // 2)  # a bit flip in the weights
    # The damaged epoch-3 file falls back to epoch 2; epoch 3 is trained again, as in the full run.
    r = hpml("train", "resume=part", "trainer.epochs=3")
    assert r.rc == 0, r.err
    assert "warning: part/checkpoints/last.pt is damaged (sha256" in r.err and "falling back to last.1.pt (epoch 2)" in r.err
    assert_bitwise_equal(load(tmp_path / "full/checkpoints/last.pt")["model"], load(ckpt / "last.pt")["model"])


def test_damaged_checkpoint_without_older_one_is_one_line(hpml, tmp_path):
    assert hpml("train", *RUN, "trainer.epochs=1", "run_dir=run").rc == 0
    last = tmp_path / "run/checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    r = hpml("train", "resume=run", "trainer.epochs=2")
    assert r.rc == 2
    assert "is damaged (sha256" in error_line(r.err) and "trainer.keep_checkpoints=2" in r.err
    flip_byte(tmp_path / "run/checkpoints/best.pt", 5000)
    r = hpml("export", "run=run", "format=torchscript")
    assert r.rc == 2 and "best.pt is damaged" in error_line(r.err)


def test_predict_checks_the_artifact_against_meta(hpml, tmp_path):
    from PIL import Image

    assert hpml("train", *RUN, "trainer.epochs=1", "run_dir=run").rc == 0
    assert hpml("export", "run=run", "format=torchscript").rc == 0
    Image.new("RGB", (16, 16)).save(tmp_path / "img.png")
    assert hpml("predict", "run=run", "images=img.png", "format=torchscript").rc == 0
    artifact = tmp_path / "run/export/torchscript/model.ts"
    flip_byte(artifact, os.path.getsize(artifact) - 100)
    r = hpml("predict", "run=run", "images=img.png", "format=torchscript")
    assert r.rc == 2 and "model.ts is damaged: its sha256 differs from" in error_line(r.err)


def test_truncated_or_corrupt_cache_is_one_line(hpml, tmp_path):
    from tests.fixtures_data import make_image_folder

    root = make_image_folder(tmp_path / "data", per_class=6, size=24)
    args = ["dataset=cifar10_128", "dataset.num_classes=3", f"dataset.root={root}", "dataset.image_size=16"]
    assert hpml("prepare", *args).rc == 0
    folder = next((root / ".hpml-cache").iterdir())
    index = json.loads((folder / "index.json").read_text())
    assert index["files"]["train_images.npy"]["size"] == os.path.getsize(folder / "train_images.npy")
    train = ["train", "model=mlp", *args, "dataset.cache=true", "trainer.epochs=1", "trainer.progress=never"]
    images = folder / "train_images.npy"
    whole = images.read_bytes()
    images.write_bytes(whole[: len(whole) // 2])  # truncated
    r = hpml(*train)
    assert r.rc == 2
    line = error_line(r.err)
    assert "train_images.npy is damaged" in line and "truncated" in line and "re-run `hpml prepare" in line, line
    images.write_bytes(whole)
    flip_byte(images, len(whole) - 10)  # a flipped bit in the last sample
    r = hpml(*train)
    assert r.rc == 2 and "content differs from the index's checksum" in error_line(r.err)
    images.write_bytes(whole)
    assert hpml(*train).rc == 0
