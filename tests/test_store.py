"""generator.store: canonical keys, cached file digests, atomic writes, the build lock."""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator import safefs, store
from generator.store import Inputs


def _inputs(**changes) -> Inputs:
    base = dict(method="topics", params=store.digest({"k": 5}), version=1, model="m", class_="c", images="i",
                seed=0, engine=store.digest({}))
    return Inputs(**{**base, **changes})


def test_digest_is_canonical_over_key_order_tuples_and_paths():
    assert store.digest({"a": 1, "b": (1, 2), "p": Path("/x")}) == store.digest({"p": "/x", "b": [1, 2], "a": 1})
    assert store.digest({"a": 1}) != store.digest({"a": 1.5})


def test_inputs_key_changes_with_each_input_and_names_it():
    base = _inputs()
    for name, value in [("params", store.digest({"k": 6})), ("version", 2), ("model", "m2"), ("class_", "c2"),
                        ("images", "i2"), ("seed", 1), ("engine", store.digest({"lr": 0.1}))]:
        changed = _inputs(**{name: value})
        assert changed.key() != base.key()
        assert changed.changed(base.as_dict()) == [name.rstrip("_")]
    assert base.changed(base.as_dict()) == []
    assert base.changed(None) == list(base.as_dict())


def test_file_digest_is_cached_by_size_and_mtime(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"a" * 1000)
    cache = tmp_path / "digests.json"
    digests = store.FileDigests(cache)
    first = digests.sha256(weights)
    digests.save()
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size ...
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and mtime: the cache answers
    assert store.FileDigests(cache).sha256(weights) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a new mtime: hashed again
    assert store.FileDigests(cache).sha256(weights) != first


def test_png_and_jpeg_writes_are_deterministic_and_sized(tmp_path):
    image = torch.rand(3, 40, 64, generator=torch.Generator().manual_seed(0))
    assert store.write_png(image, tmp_path / "a.png") == (64, 40)
    store.write_png(image, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    back = torch.from_numpy(np.array(Image.open(tmp_path / "a.png"))).permute(2, 0, 1) / 255
    assert (back - image).abs().max() <= 0.5 / 255 + 1e-6
    assert store.write_jpeg(image, tmp_path / "t.jpg", size=16) == (16, 10)
    assert Image.open(tmp_path / "t.jpg").format == "JPEG"


def test_write_json_is_strict_json(tmp_path):
    store.write_json({"x": float("nan"), "y": [float("inf"), 1.5], "t": torch.tensor([1, 2])}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == \
        {"x": None, "y": [None, 1.5], "t": [1, 2]}
    assert store.read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text('{"half":')
    assert store.read_json(tmp_path / "bad.json") is None


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    store.write_json({"old": True}, target)

    class FullDisk(io.BufferedWriter):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safefs, "open", lambda path, mode, **_: FullDisk(io.FileIO(path, mode)), raising=False)
    with pytest.raises(store.StoreError, match=r"cannot write .*manifest.json: no space left on device \(disk full\)"):
        store.write_json({"new": True}, target)
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_sweep_removes_only_temp_files(tmp_path):
    (tmp_path / "m").mkdir()
    keep = tmp_path / "m" / "a.png"
    keep.write_bytes(b"x")
    temp = store.temp_path(keep)
    temp.write_bytes(b"half")
    assert store.is_temp(temp) and not store.is_temp(keep)
    assert store.sweep_temp_files(tmp_path) == [temp]
    assert keep.exists() and not temp.exists()


def test_output_folder_under_a_file_is_refused_clearly(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(store.StoreError, match=r"cannot write to the output folder .*file/site: a file is in the way"):
        store.ensure_writable(tmp_path / "file" / "site")


def test_lock_is_exclusive_across_processes_and_names_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from generator.store import BuildLock; "
         f"lock = BuildLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(store.BuildLockedError) as err:
            store.BuildLock(tmp_path).acquire()
        assert str(err.value) == f"another atlas build is writing to {tmp_path} (pid {holder.pid})"
    finally:
        holder.kill()
        holder.wait()
    with store.BuildLock(tmp_path):  # the kernel released it with the process
        pass
