"""The cross-platform determinism matrix (issue 3).

Kernel-path switch (environment variable and API) tests come first; the matrix itself (a
standalone C driver built with several compilers and targets) follows.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import loomrt
import models

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---- kernel path switch ------------------------------------------------------------------------


def test_kernel_paths_listed_and_switchable(tmp_path):
    paths = loomrt.kernel_paths()
    assert paths[-1] == "reference" and len(set(paths)) == len(paths)
    assert loomrt.kernel_path() in paths
    m = loomrt.load(models.write_seeded_folder(str(tmp_path / "m")), threads=2)
    seen = {}
    before = loomrt.kernel_path()
    try:
        for p in paths:
            loomrt.set_kernel_path(p)
            assert loomrt.kernel_path() == p
            seen[p] = models.logits_sha256(m.logits(models.SEQ40))
        loomrt.set_kernel_path("auto")
        assert loomrt.kernel_path() == paths[0]
    finally:
        loomrt.set_kernel_path(before)
    assert len(set(seen.values())) == 1, seen


def test_kernel_path_errors():
    with pytest.raises(loomrt.NotFoundError, match="does not exist"):
        loomrt.set_kernel_path("no-such-path")
    with pytest.raises(loomrt.NotFoundError):
        loomrt.set_kernel_path("reference\0")
    # a path that this build knows of but this CPU cannot run is UnsupportedError: only
    # checkable where such a path is compiled in (e.g. avx512 on a CPU without it)
    assert loomrt.kernel_path() in loomrt.kernel_paths()


@pytest.mark.parametrize("value", ["reference", "auto", "bogus"])
def test_kernel_env_var(value):
    env = dict(os.environ, LOOMRT_KERNELS=value)
    out = subprocess.run([sys.executable, "-c", "import loomrt; print(loomrt.kernel_path())"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out == ("reference" if value == "reference" else loomrt.kernel_paths()[0])
