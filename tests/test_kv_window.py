"""The KV cache of sliding-window layers is a ring bounded by the window (csrc/model/model.h).

A layer that attends to the last W positions (Gemma 2/3 local layers, Mistral, Phi-3, Qwen3
with use_sliding_window) keeps W + 127 positions, not the context. Checked on tiny random
models of those families with a 512-position context and windows of 8-24, on prompts of
400 tokens (the ring of 135-151 rows wraps twice):

* the KV allocation of a windowed layer stays at the ring's size while a global layer's grows
  with the sequence (lrt_session_kv_rows), and the model's info says so;
* logits bit-identical to a session that keeps every position (LRT_OPEN_FULL_KV, the layout of
  before), for one eval, token by token and chunkings whose chunks straddle the ring's wrap,
  at thread counts 1-3 and on every kernel path; transformers agrees at 400 tokens;
* truncation back within 128 positions is exact, further back is refused with a StateError
  that says what to do (back to 0 always works; full_kv=True truncates anywhere);
* state save / load: the blob keeps only the rings' positions (smaller), and loading it in a
  ring session or a full-KV session continues bit-identically; an old full blob loads into a
  ring session;
* speculation (draft and prompt lookup) past the wrap equals plain decoding; batched sessions
  equal sessions alone; inspection's attention rows equal the full cache's.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pytest

import loomrt
from loomrt import errors

import models

CTX = 512
LONG = [models.BOS_ID] + [(37 * i + 11) % 251 + 3 for i in range(399)]  # 400 ids < 256
WINDOWED = ("gemma2", "gemma3", "phi3", "mistral", "qwen3")


def _config(family: str) -> Any:
    import transformers as tf

    if family == "mistral":
        cfg = models.hf_config("mistral")  # sliding_window 16 on every layer
    elif family == "qwen3":  # use_sliding_window: the layers from max_window_layers on
        cfg = models.family_config("qwen3")
        cfg.use_sliding_window = True
        cfg.sliding_window = 12
        cfg.max_window_layers = 2
        cfg.layer_types = ["full_attention"] * 2 + ["sliding_attention"] * 2
    else:
        cfg = models.family_config(family)
    cfg.max_position_embeddings = CTX
    assert isinstance(cfg, tf.PretrainedConfig)
    return cfg


def _build(family: str, folder: str) -> Any:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    hf = tf.AutoModelForCausalLM.from_config(_config(family)).to(torch.float32)
    gen = torch.Generator().manual_seed(3000)
    with torch.no_grad():
        for _, p in sorted(hf.named_parameters(), key=lambda kv: kv[0]):
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.05)
    hf.eval()
    hf.save_pretrained(folder, safe_serialization=True)
    return hf


class Pair:
    """One family: the ring model, the full-KV model of the same folder, and the full
    cache's logits of LONG (every row)."""

    def __init__(self, family: str, folder: str):
        self.family = family
        self.hf = _build(family, folder)
        self.folder = folder
        self.ring = loomrt.load(folder, threads=2)
        self.full = loomrt.load(folder, threads=2, full_kv=True)
        self.ref = self.full.session().eval(LONG, all_logits=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("kvwin")
    cache: Dict[str, Pair] = {}

    def get(family: str) -> Pair:
        if family not in cache:
            cache[family] = Pair(family, str(root / family))
        return cache[family]

    return get


def _chunked(model: loomrt.Model, sizes: List[int], threads: int = 2) -> np.ndarray:
    s = model.session(threads=threads)
    rows, i = [], 0
    for n in sizes:
        rows.append(s.eval(LONG[i:i + n], all_logits=True))
        i += n
    assert i == len(LONG)
    return np.concatenate(rows, axis=0)


def _ring_rows(p: Pair) -> int:
    return p.ring.info["sliding_window"] + 127


@pytest.mark.parametrize("family", WINDOWED)
def test_window_layers_allocate_the_ring_only(pair, family):
    p = pair(family)
    i = p.ring.info
    window = {"gemma2": models.FAMILY_WINDOW, "gemma3": models.FAMILY_WINDOW, "phi3": 24, "mistral": 16,
              "qwen3": 12}[family]
    n_windowed = {"gemma2": 2, "gemma3": 5, "phi3": 4, "mistral": 2, "qwen3": 2}[family]
    assert (i["sliding_window"], i["sliding_layers"], i["kv_window_rows"]) == (window, n_windowed, window + 127)
    assert p.full.info["kv_window_rows"] == 0 and p.full.info["sliding_window"] == window
    ring = window + 127
    s, f = p.ring.session(), p.full.session()
    s.eval(LONG)
    f.eval(LONG)
    windowed = [l for l in range(i["layers"]) if s.kv_rows(l)[1] < CTX]
    assert len(windowed) == n_windowed
    for layer in range(i["layers"]):
        alloc, limit = s.kv_rows(layer)
        if layer in windowed:  # bounded by the window, whatever the sequence length
            assert (alloc, limit) == (ring, ring), layer
        else:
            assert alloc >= len(LONG) and limit == CTX, layer
        assert f.kv_rows(layer)[0] >= len(LONG) and f.kv_rows(layer)[1] == CTX
    per_pos = 2 * i["kv_heads"] * i["head_dim"] * 4
    assert s.kv_bytes() == s.kv_rows()[0] * per_pos
    assert s.kv_bytes() < f.kv_bytes() - n_windowed * (len(LONG) - ring) * per_pos + 1
    # a session whose context is not longer than the ring needs no ring
    small = p.ring.session(context=ring)
    small.eval(LONG[:ring])
    assert small.kv_rows(windowed[0]) == (ring, ring)


@pytest.mark.parametrize("family", WINDOWED)
def test_ring_logits_equal_the_full_cache(pair, family):
    p = pair(family)
    ring = _ring_rows(p)
    plans = [
        [len(LONG)],
        [1] * len(LONG),
        [7, 129, 1, ring - 7, 2, len(LONG) - ring - 132],  # chunks across the wrap, one of 129
        [ring - 1, 2, ring - 2, 3, len(LONG) - 2 * ring - 2],
        [128] * 3 + [16],
    ]
    for threads in (1, 3):
        for sizes in plans:
            got = _chunked(p.ring, sizes, threads)
            assert np.array_equal(got, p.ref), (family, threads, sizes[:4], float(np.abs(got - p.ref).max()))


def test_ring_on_every_kernel_path(pair):
    p = pair("gemma3")
    before = loomrt.kernel_path()
    try:
        for path in loomrt.kernel_paths():
            loomrt.set_kernel_path(path)
            full = p.full.session().eval(LONG, all_logits=True)
            for sizes in ([len(LONG)], [5, 140, 1, 254]):
                got = _chunked(p.ring, sizes, 2)
                assert np.array_equal(got, full), (path, sizes)
    finally:
        loomrt.set_kernel_path(before)


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "mistral"])
def test_long_prompt_matches_transformers(pair, family):
    p = pair(family)
    ref = models.hf_logits(p.hf, LONG)
    err = float(np.abs(p.ref.astype(np.float64) - ref).max() / np.abs(ref).max())
    assert err < 1e-4, err
    assert np.array_equal(_chunked(p.ring, [len(LONG)]), p.ref)


def test_truncate_within_the_ring_is_exact_and_beyond_is_refused(pair):
    p = pair("gemma2")
    s = p.ring.session()
    s.eval(LONG[:300])
    for back in (1, 60, 128):  # step back, re-evaluate: the logits of a fresh run
        s.truncate(300 - back)
        got = s.eval(LONG[300 - back:300], all_logits=True)
        assert np.array_equal(got, p.ref[300 - back:300]), back
    with pytest.raises(errors.StateError, match="full_kv=True"):
        s.truncate(300 - 129)
    assert s.position == 300  # the refused truncation changed nothing
    assert np.array_equal(s.eval(LONG[300:301]), p.ref[300:301])
    s.truncate(0)  # back to the start always works
    assert np.array_equal(s.eval(LONG[:200], all_logits=True), p.ref[:200])
    f = p.full.session()  # full_kv: anywhere
    f.eval(LONG[:300])
    f.truncate(20)
    assert np.array_equal(f.eval(LONG[20:300], all_logits=True), p.ref[20:300])
    # a truncation the ring refuses through the C API says so too
    s.eval(LONG[200:400])
    with pytest.raises(errors.StateError, match="ring"):
        s.truncate(100)


def test_state_round_trips_through_the_ring(pair):
    p = pair("gemma3")
    ring = _ring_rows(p)
    s = p.ring.session()
    s.eval(LONG[:333])
    blob = s.save_state()
    f = p.full.session()
    f.eval(LONG[:333])
    full_blob = f.save_state()
    i = p.ring.info
    per_pos = 2 * i["kv_heads"] * i["head_dim"] * 4
    assert len(full_blob) - len(blob) == i["sliding_layers"] * (333 - ring) * per_pos - 8
    rest = LONG[333:]
    for target in (p.ring, p.full):  # continues bit-identically in a ring or a full session
        t = target.session(threads=3)
        t.load_state(blob)
        assert t.position == 333
        assert np.array_equal(t.eval(rest, all_logits=True), p.ref[333:]), target.full_kv
    r = p.ring.session()  # a full-cache blob into a ring session
    r.load_state(full_blob)
    assert np.array_equal(r.eval(rest, all_logits=True), p.ref[333:])
    t = p.full.session()  # the blob's rows bound truncation in a full session too
    t.load_state(blob)
    with pytest.raises(errors.StateError):
        t.truncate(100)
    t.truncate(333 - 128)
    assert np.array_equal(t.eval(LONG[333 - 128:333], all_logits=True), p.ref[333 - 128:333])


def test_speculation_past_the_wrap_equals_plain(pair):
    p = pair("gemma2")
    prompt = LONG[:260]
    draft = loomrt.load(p.folder, threads=1, quantize="q8_0", int8_activations=True)
    for sampling in ({}, {"temperature": 0.9, "seed": 5}):
        plain = p.full.generate(prompt, 60, receipt=True, **sampling)
        for spec in ({"draft": draft, "speculate_k": 8}, {"lookup": 3}, {"draft": draft, "lookup": 2}):
            fast = p.ring.generate(prompt, 60, receipt=True, **sampling, **spec)
            assert fast.token_ids == plain.token_ids, spec
            assert fast.receipt["step_logits_sha256"] == plain.receipt["step_logits_sha256"], spec


def test_batched_sessions_equal_alone(pair):
    p = pair("gemma2")
    from loomrt.batch import Batch

    sessions = [p.ring.session() for _ in range(3)]
    starts = [0, 150, 290]
    for s, a in zip(sessions, starts):
        if a:
            s.eval(LONG[:a])
    b = Batch(p.ring)
    pos = list(starts)
    for step in range(8):  # uneven chunks, the three sequences wrap at different steps
        n = [40, 1, 13][step % 3]
        entries = []
        for k, s in enumerate(sessions):
            m = min(n, len(LONG) - pos[k])
            if m > 0:
                entries.append((s, LONG[pos[k]:pos[k] + m]))
        b.eval(entries)
        for (s, ids) in entries:
            k = sessions.index(s)
            pos[k] += len(ids)
            got = loomrt.batch.last_logits(s)
            assert np.array_equal(got, p.ref[pos[k] - 1]), (step, k)


def test_inspection_attention_equals_the_full_cache(pair):
    p = pair("gemma2")
    a = p.ring.inspect(LONG[:200], attention=True)
    b = p.full.inspect(LONG[:200], attention=True)
    assert np.array_equal(a.attentions, b.attentions)
    assert np.array_equal(a.hidden, b.hidden) and np.array_equal(a.logits, b.logits)


@pytest.mark.parametrize("all_logits", [False, True])
def test_failed_long_eval_leaves_the_ring_as_it_was(pair, tmp_path, all_logits):
    """An eval of 301 tokens whose last one has a NaN embedding row: its rows overwrote the
    rings (more than 128 positions), the diagnosis re-runs what it needs, names the position,
    and the session still continues bit-identically from where it was."""
    import shutil

    from safetensors.numpy import load_file, save_file

    p = pair("mistral")  # untied: the LM head's row 255 stays finite
    folder = tmp_path / "poisoned"
    shutil.copytree(p.folder, folder)
    t = load_file(str(folder / "model.safetensors"))
    emb = t["model.embed_tokens.weight"].copy()
    assert 255 not in LONG
    emb[255] = np.nan
    t["model.embed_tokens.weight"] = emb
    save_file(t, str(folder / "model.safetensors"), metadata={"format": "pt"})
    m = loomrt.load(str(folder), threads=2)
    s = m.session()
    s.eval(LONG[:100])
    with pytest.raises(loomrt.NumericError, match=r"position 400 \(token 255\).*token embedding"):
        s.eval(LONG[100:] + [255], all_logits=all_logits)
    assert s.position == 100
    assert np.array_equal(s.eval(LONG[100:], all_logits=True), p.ref[100:])
