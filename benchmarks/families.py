"""Speed of the newer families against llama.cpp: random-weight Qwen3-0.6B-shaped and
Gemma-3-270M-shaped models (the published configs' shapes, seeded NumPy weights), written as
F16 GGUFs with llama.cpp's names and metadata (tests/models.py write_family_gguf), then
measured by benchmarks/bench.py (loomrt bench) in F16 and Q8_0, loomrt and llama.cpp side by
side: decode and prefill tokens/s and their ratios.

    python benchmarks/families.py [--shapes qwen3-0.6b gemma3-270m] [--formats f16 q8_0]
                                  [--threads 1 2] [--quick] [--out DIR]

Writes about 1.2 GB (Qwen3) and 0.5 GB (Gemma 3) of F16 plus the Q8_0 copies to --out.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import models  # noqa: E402  (tests/models.py)

SHAPES: Dict[str, Dict[str, Any]] = {
    # Qwen/Qwen3-0.6B config.json
    "qwen3-0.6b": {"family": "qwen3", "cfg": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}},
    # google/gemma-3-270m config.json
    "gemma3-270m": {"family": "gemma3", "cfg": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 262144,
        "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "query_pre_attn_scalar": 256, "sliding_window": 512, "sliding_window_pattern": 6,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}},
}


def write_shape(name: str, out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}-random-f16.gguf")
    if os.path.isfile(path):
        return path
    spec = SHAPES[name]
    cfg = spec["cfg"]
    rng = np.random.default_rng(1234)
    tensors = {}
    for tname, shape in models.family_tensor_shapes(spec["family"], cfg):
        if len(shape) == 1:
            tensors[tname] = (0.2 * rng.random(shape, dtype=np.float32) - 0.1).astype(np.float32)
        else:  # uniform, variance 1/fan_in, straight to F16
            a = rng.random(shape, dtype=np.float32)
            a = (a * 2.0 - 1.0) * np.float32(np.sqrt(3.0 / shape[1]))
            tensors[tname] = a.astype(np.float16)
    print(f"[families] writing {path}", file=sys.stderr, flush=True)
    models.write_family_gguf(None, path, name=f"random {name}", cfg=cfg, tensors=tensors, matrix_dtype=np.float16)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--formats", nargs="+", default=["f16", "q8_0"])
    ap.add_argument("--threads", nargs="+", default=["1", "2"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "loomrt-families-bench"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import bench  # benchmarks/bench.py

    rc = 0
    for name in args.shapes:
        path = write_shape(name, args.out)
        print(f"\n## {name} (random weights)\n", flush=True)
        rc |= bench.main([path, "--formats", *args.formats, "--systems", "loomrt", "llama.cpp", "--threads",
                          *args.threads] + (["--quick"] if args.quick else []))
    return rc


if __name__ == "__main__":
    sys.exit(main())
