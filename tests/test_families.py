"""The newer families (Qwen3, Gemma 2, Gemma 3 text, SmolLM3, OLMo 2, Phi-3) against
transformers and llama.cpp.

For each family a tiny random-weight model is built with ``transformers`` from its real
config scaled down, every distinctive feature switched on (models.family_config: explicit
head_dim, q/k norms, Gemma's embedding scale / 1 + w norms / GeGLU / sandwich norms /
soft-capping / query_pre_attn_scalar, sliding windows of 8 < the 40-token prompt, Gemma 3's
local RoPE base and linear scaling, SmolLM3's no-RoPE layer, OLMo 2's post-norms, Phi-3's
fused matrices, partial rotary and longrope), saved as an HF folder and as a GGUF with
llama.cpp's tensor names and metadata (models.write_family_gguf). Checked:

* logits of models.SEQ40 within the parity tolerance of test_parity_hf.py, and 32 greedy
  tokens identical to ``generate()``; Phi-3's reference is transformers decoding token by
  token (its longrope switch to the long factors at position 32 depends on the sequence
  length it is given; loomrt switches per position, which is what generate() does);
* the GGUF copy gives bit-identical logits and tokens;
* every kernel path, thread counts 1/2/3 and prefill chunkings give the same bits, and the
  same greedy tokens;
* llama.cpp (llama-cpp-python) on the GGUF of a variant it can represent: the same logits
  within 1e-5 (Gemma: 2e-3, ggml's GELU reads an F16 table);
* each distinctive feature changes the logits when switched off in the config, and
  transformers agrees with loomrt on the edited config too (the feature is really read);
* config keys that may change the math and are not understood stay errors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Dict

import numpy as np
import pytest

import loomrt
import models

FAMILIES = models.FAMILIES
SEQ = models.SEQ40
PROMPT = SEQ[:8]
N_GEN = 32
REL_TOL = 1e-4  # test_parity_hf.F32_REL_TOL


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    assert a.shape == ref.shape, (a.shape, ref.shape)
    assert np.isfinite(a).all()
    return float(np.abs(a.astype(np.float64) - ref).max() / np.abs(ref).max())


def reference_logits(family: str, hf: Any, ids) -> np.ndarray:
    if family == "phi3":
        return models.hf_incremental_logits(hf, ids)
    return models.hf_logits(hf, ids)


def greedy(m: loomrt.Model, prompt, n: int, threads=None) -> list:
    s = m.session(threads=threads)
    s.configure(loomrt.SamplingParams(temperature=0.0))
    s.eval(prompt)
    out = []
    for _ in range(n):
        out.append(s.sample())
        s.eval([out[-1]])
    return out


class Family:
    def __init__(self, family: str, root: str):
        self.family = family
        self.hf = models.build_family_model(family, seed=0)
        self.folder = os.path.join(root, family)
        self.hf.save_pretrained(self.folder, safe_serialization=True)
        self.gguf = models.write_family_gguf(self.folder, os.path.join(root, family + ".gguf"))
        self.model = loomrt.load(self.folder, threads=2)
        self.logits = self.model.logits(SEQ)
        self._ref: Dict[str, Any] = {}

    def ref_logits(self) -> np.ndarray:
        if "logits" not in self._ref:
            self._ref["logits"] = reference_logits(self.family, self.hf, SEQ)
        return self._ref["logits"]

    def ref_greedy(self) -> list:
        if "greedy" not in self._ref:
            self._ref["greedy"] = models.hf_greedy_cached(self.hf, PROMPT, N_GEN)
            if self.family != "phi3":  # generate() itself where its eos handling lets it run 32 steps
                assert models.hf_greedy(self.hf, PROMPT, N_GEN) == self._ref["greedy"]
        return self._ref["greedy"]


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("families"))
    cache: Dict[str, Family] = {}

    def get(family: str) -> Family:
        if family not in cache:
            cache[family] = Family(family, root)
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_and_greedy_match_transformers(fam, family):
    f = fam(family)
    assert f.model.info["architecture"] == {"gemma3": "gemma3"}.get(family, family)
    assert f.model.info["features"], "loomrt info must name the family's distinctive settings"
    err = rel_err(f.logits, f.ref_logits())
    assert err <= REL_TOL, f"{family}: max abs diff {err:.3g} of max |logit|"
    ref = f.ref_greedy()
    assert len(ref) == N_GEN
    assert greedy(f.model, PROMPT, N_GEN) == ref
    assert len(set(ref)) > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_gguf_bit_identical_to_safetensors(fam, family):
    f = fam(family)
    g = loomrt.load(f.gguf, threads=2)
    assert g.info["is_gguf"] and g.info["architecture"] == f.model.info["architecture"]
    for key in ("vocab_size", "hidden_size", "layers", "heads", "kv_heads", "head_dim", "ffn_size", "parameters",
                "tied_embeddings"):
        assert g.info[key] == f.model.info[key], key
    b = g.logits(SEQ)
    assert np.array_equal(f.logits, b), f"max diff {np.abs(f.logits - b).max():.3g}"
    assert greedy(g, PROMPT, N_GEN) == f.ref_greedy()


@pytest.mark.parametrize("family", FAMILIES)
def test_kernel_paths_threads_and_chunking_give_the_same_bits(fam, family):
    f = fam(family)
    before = loomrt.kernel_path()
    paths = loomrt.kernel_paths()
    assert "reference" in paths and len(paths) >= 2
    try:
        for path in paths:
            loomrt.set_kernel_path(path)
            for threads in (1, 2, 3):
                for chunk in (len(SEQ), 7) + ((1,) if threads == 2 else ()):
                    s = f.model.session(threads=threads)
                    rows = [s.eval(SEQ[i:i + chunk], all_logits=True) for i in range(0, len(SEQ), chunk)]
                    got = np.concatenate(rows, axis=0)
                    assert np.array_equal(got, f.logits), (path, threads, chunk, float(np.abs(got - f.logits).max()))
            assert greedy(f.model, PROMPT, N_GEN, threads=3) == f.ref_greedy(), path
    finally:
        loomrt.set_kernel_path(before)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_and_q8_0(fam, tmp_path, family):
    """BF16 checkpoint against transformers running the same bf16 weights widened to f32;
    quantized to Q8_0 at load (fused Phi-3 matrices split by rows of blocks) bit-identical to
    a Q8_0 GGUF written by gguf-py, and still close to the float model."""
    import copy

    import torch

    f = fam(family)
    folder = str(tmp_path / "bf16")
    copy.deepcopy(f.hf).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    m = loomrt.load(folder, threads=2)
    assert m.info["dtype"] == "bf16"
    ref = reference_logits(family, models.load_hf_folder(folder, torch.float32), SEQ)
    assert rel_err(m.logits(SEQ), ref) <= REL_TOL
    q_load = loomrt.load(f.folder, threads=2, quantize="q8_0")
    q_file = loomrt.load(models.write_family_gguf(f.folder, str(tmp_path / "q8.gguf"), matrix_dtype="q8_0"), threads=3)
    assert q_load.info["dtype"] == q_file.info["dtype"] == "q8_0"
    a, b = q_load.logits(SEQ), q_file.logits(SEQ)
    assert np.array_equal(a, b), float(np.abs(a - b).max())
    assert 1e-6 < rel_err(a, f.logits) < 5e-2


# ---- llama.cpp ------------------------------------------------------------------------------------

LLAMA_CHILD = r"""
import json, sys
import numpy as np
from llama_cpp import Llama
ids = json.loads(sys.argv[2])
llm = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, logits_all=True, verbose=False, n_batch=64,
            type_k=0, type_v=0, flash_attn=False)  # F32 KV cache
llm.eval(ids)
print(json.dumps(np.asarray(llm.scores[:len(ids)], dtype=np.float64).tolist()))
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_llama_cpp_agrees_on_the_gguf(tmp_path, family):
    pytest.importorskip("llama_cpp")
    hf = models.build_family_model(family, seed=10 + FAMILIES.index(family), llama_cpp_compatible=True)
    folder = str(tmp_path / family)
    hf.save_pretrained(folder, safe_serialization=True)
    path = models.write_family_gguf(folder, str(tmp_path / (family + ".gguf")))
    p = subprocess.run([sys.executable, "-c", LLAMA_CHILD, path, json.dumps(SEQ)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, "llama.cpp could not run the GGUF: " + p.stderr[-2000:]
    theirs = np.asarray(json.loads(p.stdout.strip().splitlines()[-1]), dtype=np.float64)
    ours = loomrt.load(path, threads=2).logits(SEQ)
    tol = 2e-3 if family.startswith("gemma") else 1e-5
    err = rel_err(ours, theirs)
    assert err <= tol, f"{family}: loomrt vs llama.cpp {err:.3g}"
    assert rel_err(ours, reference_logits(family, hf, SEQ)) <= REL_TOL


# ---- each feature is read ---------------------------------------------------------------------------


def edited(src: str, dst: str, edit) -> str:
    shutil.copytree(src, dst)
    with open(os.path.join(dst, "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    edit(cfg)
    with open(os.path.join(dst, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(cfg, fh)
    return dst


def _set(**kv):
    def edit(cfg):
        cfg.update(kv)
    return edit


def _rope(layer_type, **kv):
    def edit(cfg):
        cfg["rope_parameters"][layer_type].update(kv)
    return edit


def _phi3_full_rotary(cfg):
    half = cfg["hidden_size"] // cfg["num_attention_heads"] // 2
    cfg["rope_parameters"].update(partial_rotary_factor=1.0, short_factor=[1.0] * half, long_factor=[1.0] * half)


FEATURE_EDITS = [
    ("qwen3", "theta", _set(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 1),
    ("gemma2", "no-window", _set(layer_types=["full_attention"] * 4), models.FAMILY_WINDOW),
    ("gemma2", "no-attn-softcap", _set(attn_logit_softcapping=None), 1),
    ("gemma2", "no-final-softcap", _set(final_logit_softcapping=None), 0),
    ("gemma2", "query-scalar", _set(query_pre_attn_scalar=32), 1),
    ("gemma3", "local-base", _rope("sliding_attention", rope_theta=50.0), 1),
    ("gemma3", "no-linear", _rope("full_attention", rope_type="default", factor=None), 1),
    # (full layers also take the global RoPE: positions >= 1 change)
    ("gemma3", "no-window", _set(layer_types=["full_attention"] * 6), 1),
    ("smollm3", "all-rope", _set(no_rope_layers=[1, 1, 1, 1]), 1),
    ("phi3", "no-window", _set(sliding_window=None), 24),
    ("phi3", "full-rotary", _phi3_full_rotary, 1),
]


@pytest.mark.parametrize("family,name,edit,first", FEATURE_EDITS, ids=[f"{f}-{n}" for f, n, _, _ in FEATURE_EDITS])
def test_feature_is_read(fam, tmp_path, family, name, edit, first):
    """Switching the feature off changes exactly the positions it can affect, and
    transformers computes the same as loomrt on the edited config."""
    import torch

    f = fam(family)

    def drop_nones(cfg):
        edit(cfg)
        for k in [k for k, v in cfg.get("rope_parameters", {}).items() if isinstance(v, dict)]:
            cfg["rope_parameters"][k] = {a: b for a, b in cfg["rope_parameters"][k].items() if b is not None}

    folder = edited(f.folder, str(tmp_path / name), drop_nones)
    got = loomrt.load(folder, threads=2).logits(SEQ)
    assert np.array_equal(got[:first], f.logits[:first])
    assert not np.allclose(got[first:], f.logits[first:], rtol=0, atol=1e-4), "the edit changed nothing"
    hf = models.load_hf_folder(folder, torch.float32)
    assert rel_err(got, reference_logits(family, hf, SEQ)) <= REL_TOL


# ---- what stays an error ------------------------------------------------------------------------------


@pytest.mark.parametrize("family,edit", [
    ("qwen3", {"attn_temperature": 0.5}),  # an unknown key that may change the math
    ("gemma2", {"use_bidirectional_attention": True}),
    ("gemma2", {"hidden_activation": "gelu"}),
    ("gemma3", {"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}),
    ("smollm3", {"use_sliding_window": True, "sliding_window": 8}),
    ("olmo2", {"clip_qkv": 8.0}),
    ("phi3", {"lm_head_bias": True}),
])
def test_unsupported_settings_are_errors(fam, tmp_path, family, edit):
    folder = edited(fam(family).folder, str(tmp_path / "bad"), _set(**edit))
    with pytest.raises(loomrt.UnsupportedError):
        loomrt.load(folder)


INFO_SETTINGS = {
    "qwen3": ["head_dim 32 (not hidden / heads)", "q/k RMSNorm per head", "no q/k/v bias"],
    "gemma2": ["head_dim 32", "RMSNorm weight 1 + w", "embeddings x 8", "GeGLU (tanh GELU)",
               "norms before and after attention and MLP", "query_pre_attn_scalar 24", "attention soft-cap 3",
               "final-logit soft-cap 4", "sliding window 8 on 2 of 4 layers"],
    "gemma3": ["q/k RMSNorm per head", "RMSNorm weight 1 + w", "GeGLU (tanh GELU)", "sliding window 8 on 5 of 6 layers",
               "local RoPE base 10000 on sliding layers, global base 1e+06", "RoPE linear scaling / 8 (global layers)"],
    "smollm3": ["no RoPE on 1 of 4 layers"],
    "olmo2": ["q/k RMSNorm over the whole projection", "norms after attention and MLP (none before)"],
    "phi3": ["fused qkv and gate_up", "sliding window 24 on 4 of 4 layers", "partial rotary: 12 of 16 dims",
             "longrope: short factors below position 32, long from it, attention factor 1.18322"],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_info_cli_shows_family_settings(fam, capsys, family):
    """`loomrt info` names every distinctive setting of each family (read from its config),
    for the HF folder and the GGUF copy alike, and the KV memory at full context."""
    from loomrt.cli import main

    f = fam(family)
    for path in (f.folder, f.gguf):
        assert main(["info", path]) == 0
        out = capsys.readouterr().out
        line = next(l for l in out.splitlines() if l.startswith("family settings"))
        for want in INFO_SETTINGS[family]:
            assert want in line, (path, want, line)
        assert "KV cache at full context" in out
