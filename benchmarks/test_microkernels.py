"""pytest-benchmark microbenchmarks of loomrt's matrix-vector kernels, per weight format and
kernel path (loomrt.kernel_paths(): reference, avx2, ...).

    pip install pytest-benchmark      # or: pip install -e .[bench]
    python -m pytest benchmarks/test_microkernels.py --benchmark-columns=median,ops

No single kernel is reachable from Python, so each case times the decode step of a one-layer
model with SmolLM2-135M's layer shapes (hidden 576, FFN 1536, 9 heads / 3 KV heads of 64) and a
256-token vocabulary: the step is dominated by the layer's seven matrix-vector products
(~2.6 M weights) plus a 256 x 576 output matrix. Weights are seeded (NumPy PCG64) and converted
to each format by loomrt._formats. This file lives in benchmarks/, outside pytest's testpaths,
so CI does not run it. Needs: gguf, safetensors, pytest-benchmark.
"""
from __future__ import annotations

import os
import sys
from typing import Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's loomrt
sys.path.insert(0, os.path.join(ROOT, "tests"))  # tests/models.py: seeded GGUF writer

import loomrt  # noqa: E402
from loomrt._formats import make_format  # noqa: E402

pytest.importorskip("pytest_benchmark")
pytest.importorskip("gguf")

FORMATS = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"]
SMOL_LAYER = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 1, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "bos_token_id": 1,
}
POSITION = 16  # tokens in the cache before the timed step


@pytest.fixture(scope="module")
def layer_files(tmp_path_factory) -> dict:
    import models

    d = tmp_path_factory.mktemp("microkernels")
    src = models.write_seeded_gguf(str(d / "smol-layer.gguf"), SMOL_LAYER, with_tokenizer=False)
    return {f: (src if f == "f32" else make_format(src, f, str(d))) for f in FORMATS}


@pytest.fixture
def kernel_path(request) -> Iterator[str]:
    loomrt.set_kernel_path(request.param)
    yield request.param
    loomrt.set_kernel_path("auto")


def _session(path: str) -> "loomrt.Session":
    m = loomrt.load(path, threads=1, context=128)
    s = m.session()
    s.eval(list(range(3, 3 + POSITION)))
    return s


@pytest.mark.parametrize("kernel_path", loomrt.kernel_paths(), indirect=True)
@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_step(benchmark, layer_files, fmt: str, kernel_path: str) -> None:
    """One token through the layer (7 matrix-vector products) and the 256 x 576 output."""
    s = _session(layer_files[fmt])
    benchmark.group = f"decode step {fmt}"
    benchmark.extra_info.update(format=fmt, kernels=loomrt.kernel_path())

    def step() -> None:
        s.truncate(POSITION)
        s.eval([7])

    benchmark(step)
    assert s.position == POSITION + 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_prefill_64(benchmark, layer_files, fmt: str) -> None:
    """64 tokens in one call (matrix-matrix products) on the best kernel path."""
    s = _session(layer_files[fmt])
    ids: List[int] = [(5 * i) % 250 + 3 for i in range(64)]
    benchmark.group = "prefill 64 tokens"
    benchmark.extra_info.update(format=fmt, kernels=loomrt.kernel_path())

    def prefill() -> None:
        s.reset()
        s.eval(ids)

    benchmark(prefill)
