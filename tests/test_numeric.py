"""Non-finite values (issue 11, item 3): a model whose weights make NaN or infinite logits
fails with LRT_ERR_NUMERIC / loomrt.NumericError naming the position and the first layer
whose output stopped being finite, instead of "generating" an empty text that ends with
finish_reason "stop" (a NaN logit never wins the argmax, so greedy picked token 0, often an
end token). The session is left as it was before the failing eval."""
from __future__ import annotations

import re
from typing import Any, Dict

import numpy as np
import pytest

import loomrt
import models

CFG: Dict[str, Any] = dict(models.SEEDED_CONFIG, num_hidden_layers=3, eos_token_id=0)
L = CFG["num_hidden_layers"]


@pytest.fixture(scope="module")
def tensors() -> Dict[str, np.ndarray]:
    return models.seeded_llama_tensors(CFG, 5)


def _poisoned(tmp_path, tensors, name: str, value: float, rows=slice(None), gguf: bool = False) -> loomrt.Model:
    t = {k: v.copy() for k, v in tensors.items()}
    t[name][rows] = value
    if gguf:
        path = models.write_llama_gguf(str(tmp_path / "poisoned.gguf"), t, CFG)
    else:
        path = models.write_folder(str(tmp_path / "poisoned"), CFG, models.safetensors_bytes(t))
    return loomrt.load(path, threads=2)


PROMPT = [1, 17, 33, 5, 99, 7]

# (tensor, value, rows, where the message must point)
CASES = [
    ("model.layers.1.self_attn.q_proj.weight", np.nan, slice(None), r"layer 1 of 3 \(attention\)"),
    ("model.layers.2.mlp.down_proj.weight", np.inf, (3, 7), r"layer 2 of 3 \(MLP\)"),
    ("model.layers.0.self_attn.v_proj.weight", -np.inf, (0, 0), r"layer 0 of 3 \(attention\)"),
    ("model.layers.1.post_attention_layernorm.weight", np.nan, 4, r"layer 1 of 3 \(MLP\)"),
    ("model.embed_tokens.weight", np.nan, 99, r"token embedding"),
    ("lm_head.weight", np.nan, 200, r"final norm or LM head"),
    ("model.norm.weight", np.inf, 0, r"final norm or LM head"),
]


@pytest.mark.parametrize("name,value,rows,where", CASES, ids=[c[0].replace("model.", "") for c in CASES])
def test_non_finite_logits_name_the_layer(tmp_path, tensors, name, value, rows, where) -> None:
    m = _poisoned(tmp_path, tensors, name, value, rows)
    s = m.session()
    with pytest.raises(loomrt.NumericError) as e:
        s.eval(PROMPT)
    msg = str(e.value)
    assert re.search(where, msg), msg
    assert re.search(r"position \d+", msg) and "non-finite" in msg, msg
    assert isinstance(e.value, ArithmeticError) and isinstance(e.value, loomrt.LoomrtError)
    assert s.position == 0  # the session is unchanged
    # friendly API: an error, never an empty "stop"
    with pytest.raises(loomrt.NumericError, match=where):
        m.generate(PROMPT, max_tokens=5)
    with pytest.raises(loomrt.NumericError, match=where):
        m.logits(PROMPT)


def test_position_of_the_first_non_finite_row(tmp_path, tensors) -> None:
    """An embedding row poisoned for one token: the message names the position of that token
    (the first row whose values stopped being finite), whether all rows' logits are asked
    for or only the last."""
    m = _poisoned(tmp_path, tensors, "model.embed_tokens.weight", np.nan, 99)
    for all_logits in (False, True):
        s = m.session()
        with pytest.raises(loomrt.NumericError, match=r"position 4 \(token 99\).*token embedding"):
            s.eval(PROMPT, all_logits=all_logits)
        assert s.position == 0
        s.eval(PROMPT[:4])  # the rows before it are fine
        assert s.position == 4


def test_gguf_names_its_tensors(tmp_path, tensors) -> None:
    m = _poisoned(tmp_path, tensors, "model.layers.2.mlp.up_proj.weight", np.nan, gguf=True)
    with pytest.raises(loomrt.NumericError, match=r"layer 2 of 3 \(MLP\).*blk\.2\.ffn_"):
        m.session().eval(PROMPT)
    m = _poisoned(tmp_path, tensors, "model.layers.2.mlp.up_proj.weight", np.nan)
    with pytest.raises(loomrt.NumericError, match=r"layer 2 of 3 \(MLP\).*model\.layers\.2\.mlp\."):
        m.session().eval(PROMPT)


def test_healthy_model_unaffected(tmp_path, tensors) -> None:
    """The check adds no error to a finite model and does not change its logits."""
    path = models.write_folder(str(tmp_path / "ok"), CFG, models.safetensors_bytes(tensors))
    m = loomrt.load(path, threads=2)
    a = m.logits(PROMPT)
    assert np.isfinite(a).all()
    s = m.session()
    for t in PROMPT:
        row = s.eval([t])
    assert np.array_equal(row[0], a[-1])


def test_c_status_numeric(tmp_path, tensors) -> None:
    """LRT_ERR_NUMERIC is -12 in the C API (named, in the ctypes and C# bindings), and the
    pull API (lrt_session_prompt_tokens) returns it too."""
    from loomrt import _lib

    ffi, lib = _lib.ffi, _lib.lib
    assert lib.LRT_ERR_NUMERIC == -12
    assert ffi.string(lib.lrt_status_name(-12)) == b"LRT_ERR_NUMERIC"
    m = _poisoned(tmp_path, tensors, "model.layers.0.mlp.gate_proj.weight", np.inf)
    s = m.session()
    ids = ffi.new("int32_t[]", PROMPT)
    assert lib.lrt_session_prompt_tokens(s._h, ids, len(PROMPT), 0) == -12
    assert b"layer 0 of 3 (MLP)" in ffi.string(lib.lrt_last_error())
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "bindings", "python", "loomrt_ctypes.py"), encoding="utf-8") as f:
        assert '-12: "LRT_ERR_NUMERIC"' in f.read()
    with open(os.path.join(root, "bindings", "csharp", "Loomrt.cs"), encoding="utf-8") as f:
        assert "Numeric = -12" in f.read()
