"""Hub ids resolve from the local HuggingFace cache (no network): the test builds the cache."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import loomrt


def test_hub_id_from_local_cache(seeded_folder, tmp_path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--loomrt-tests--tiny-llama"
    snap = repo / "snapshots" / commit
    shutil.copytree(seeded_folder, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    m = loomrt.load("loomrt-tests/tiny-llama", threads=1)
    assert os.path.samefile(m.path, snap)
    assert np.array_equal(m.logits([1, 2, 3]), loomrt.load(seeded_folder, threads=1).logits([1, 2, 3]))
    with pytest.raises(loomrt.NotFoundError, match="not in the HuggingFace cache"):
        loomrt.load("loomrt-tests/absent-model")
