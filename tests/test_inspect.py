"""Inspection (docs/inspect.md): per-layer hidden states and attention probabilities recorded
by the C forward pass, checked against transformers' output_hidden_states / output_attentions
on tiny random Llama, Qwen2 and GPT-2 models; the logit lens of the last layer is the model's
logits bit for bit; recording changes no logit; the report renders."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import loomrt

import models

SEQ = models.SEQ40[:24]
HID_TOL = 2e-4   # float32 residual streams of two implementations (|h| ~ 1)
ATT_TOL = 2e-5   # probabilities


def _hf_run(hf, ids):
    import torch

    hf.set_attn_implementation("eager")  # output_attentions needs the eager kernel
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    return [h[0].numpy() for h in out.hidden_states], [a[0].numpy() for a in out.attentions], out.logits[0].numpy()


def _final_norm(hf, arch):
    return hf.transformer.ln_f if arch == "gpt2" else hf.model.norm


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_hidden_states_and_attentions_match_transformers(hf_models, arch) -> None:
    import torch

    ms = hf_models[arch]
    m = loomrt.load(ms.f32_dir, threads=2)
    ins = m.inspect(SEQ)
    hs, atts, logits = _hf_run(ms.model, SEQ)
    L = m.info["layers"]
    assert ins.hidden.shape == (L + 1, len(SEQ), m.info["hidden_size"])
    assert ins.attentions.shape == (L, m.info["heads"], len(SEQ), len(SEQ))
    for l in range(L):  # HF's last hidden state has the final norm applied; ours is the raw stream
        assert np.max(np.abs(ins.hidden[l] - hs[l])) < HID_TOL, (arch, l)
    with torch.no_grad():
        normed = _final_norm(ms.model, arch)(torch.from_numpy(ins.hidden[L])).numpy()
    assert np.max(np.abs(normed - hs[L])) < HID_TOL
    for l in range(L):
        assert np.max(np.abs(ins.attentions[l] - atts[l])) < ATT_TOL, (arch, l)
    assert np.allclose(ins.attentions.sum(-1), 1.0, atol=1e-5)
    # the lens of the last layer is the model's logits, bit for bit; recording changed nothing
    plain = m.session().eval(SEQ, all_logits=True)
    assert plain.tobytes() == ins.logits.tobytes()
    s = m.session()
    lens = np.empty_like(plain)
    from loomrt._lib import ffi, lib

    hid = np.ascontiguousarray(ins.hidden[L])
    loomrt._lib.check(lib.lrt_session_lens(s._h, ffi.cast("float *", hid.ctypes.data), len(SEQ),
                                           ffi.cast("float *", lens.ctypes.data)))
    assert lens.tobytes() == plain.tobytes()
    assert np.array_equal(ins.lens_top[L, :, 0], np.argmax(plain, axis=1))
    # entropy and surprisal from the logits
    lp = plain.astype(np.float64) - plain.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    assert np.allclose(ins.entropy, -(np.exp(lp) * lp).sum(1), atol=1e-9)
    assert np.allclose(ins.surprisal[:-1], [-lp[t, SEQ[t + 1]] for t in range(len(SEQ) - 1)], atol=1e-9)
    assert np.isnan(ins.surprisal[-1])


def test_sliding_window_attention_and_threads(hf_models) -> None:
    ms = hf_models["mistral"]  # sliding window 16: keys older than the window get no weight
    seq = models.SEQ40[:30]
    a = loomrt.load(ms.f32_dir, threads=1).inspect(seq)
    b = loomrt.load(ms.f32_dir, threads=2).inspect(seq)
    assert a.hidden.tobytes() == b.hidden.tobytes() and a.attentions.tobytes() == b.attentions.tobytes()
    _, atts, _ = _hf_run(ms.model, seq)
    for l in range(len(atts)):
        assert np.max(np.abs(a.attentions[l] - atts[l])) < ATT_TOL
    assert np.all(a.attentions[:, :, 29, :14] == 0.0) and np.all(a.attentions[:, :, 29, 14:] > 0.0)


def test_report_and_cli(hf_models, tmp_path) -> None:
    folder = hf_models["llama"].f32_dir
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_html, out_json = tmp_path / "r.html", tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "loomrt", "inspect", folder, "--ids", ",".join(map(str, SEQ[:10])),
                        "--html", str(out_html), "--json", str(out_json)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(out_json.read_text(encoding="utf-8"))
    ins = loomrt.load(folder).inspect(SEQ[:10])
    assert d["token_ids"] == SEQ[:10] and np.array_equal(np.array(d["attentions"], dtype=np.float32), ins.attentions)
    assert np.array_equal(np.array(d["hidden"], dtype=np.float32), ins.hidden)
    page = out_html.read_text(encoding="utf-8")
    assert page.count('class="lens"') == (ins.lens_top.shape[0]) * 10
    assert "entropy" in p.stdout and "layer" in p.stdout
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (tests/install-deps.sh installs it)")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "prof"),
            "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(base + ["--dump-dom", out_html.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-ready="10"' in dom.stdout and "Uncaught" not in dom.stderr
    shot = tmp_path / "inspect.png"
    subprocess.run(base + ["--screenshot=" + str(shot), "--window-size=1100,900", out_html.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 1000
    art = os.environ.get("LOOMRT_TEST_ARTIFACTS")
    if art:
        os.makedirs(art, exist_ok=True)
        shutil.copy(shot, os.path.join(art, "inspect-report.png"))
