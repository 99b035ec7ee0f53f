"""Inspection: what happens inside a model on a prompt (docs/inspect.md).

>>> ins = model.inspect("The capital of France is")
>>> ins.hidden.shape        # (layers + 1, tokens, dim): embedding, then after each layer
>>> ins.attentions.shape    # (layers, heads, tokens, tokens): attention probabilities
>>> ins.lens_top[-1]        # per layer: top tokens of the logit lens at each position
>>> ins.to_html("report.html")

The numbers come from the C forward pass itself through a recording hook
(``lrt_session_inspect``): hidden states and attention probabilities are copies of what the
pass computes, and the logit lens applies the model's own final norm and LM head
(``lrt_session_lens``), so the last layer's lens is the model's logits bit for bit.
Entropy and surprisal are computed from the logits in float64.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _lib
from ._lib import ffi, lib


def _fptr(a: Optional[np.ndarray]) -> Any:
    return ffi.NULL if a is None else ffi.cast("float *", a.ctypes.data)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@dataclasses.dataclass
class Inspection:
    """What :meth:`loomrt.Model.inspect` records. Arrays are NumPy; ``layers`` = L, T tokens:

    * ``hidden`` (L + 1, T, dim) float32: the residual stream after the embedding (row 0) and
      after each layer (before the final norm);
    * ``attentions`` (L, heads, T, T) float32: each head's attention probabilities (query
      position, key position; zero above the diagonal and outside a sliding window);
    * ``logits`` (T, vocab) float32: the model's logits at each position;
    * ``lens_top`` / ``lens_top_probs`` (L + 1, T, k): the logit lens, each stage's states
      through the final norm and LM head: its top-k tokens and probabilities;
      ``lens_entropy`` (L + 1, T) in nats;
    * ``entropy`` (T): entropy of the next-token distribution at each position (nats);
      ``surprisal`` (T): -log p(next token) of the token that follows (NaN at the last).
    """

    token_ids: List[int]
    tokens: List[str]
    hidden: np.ndarray
    attentions: np.ndarray
    logits: np.ndarray
    lens_top: np.ndarray
    lens_top_probs: np.ndarray
    lens_entropy: np.ndarray
    entropy: np.ndarray
    surprisal: np.ndarray
    model: str = ""
    vocab_text: Dict[int, str] = dataclasses.field(default_factory=dict)

    def to_dict(self, arrays: bool = True) -> Dict[str, Any]:
        """JSON-ready numbers (``arrays=False`` leaves out hidden states and logits, the bulk)."""
        d: Dict[str, Any] = {
            "model": self.model, "token_ids": self.token_ids, "tokens": self.tokens,
            "entropy": [float(x) for x in self.entropy],
            "surprisal": [None if np.isnan(x) else float(x) for x in self.surprisal],
            "attentions": self.attentions.tolist(),
            "lens_top": self.lens_top.tolist(), "lens_top_probs": self.lens_top_probs.tolist(),
            "lens_entropy": self.lens_entropy.tolist(),
            "vocab_text": {str(k): v for k, v in sorted(self.vocab_text.items())},
        }
        if arrays:
            d["hidden"] = self.hidden.tolist()
            d["logits"] = self.logits.tolist()
        return d

    def to_json(self, path: Optional[Union[str, os.PathLike]] = None, arrays: bool = True) -> str:
        text = json.dumps(self.to_dict(arrays))
        if path is not None:
            _lib.write_text(path, text)
        return text

    def to_html(self, path: Optional[Union[str, os.PathLike]] = None, title: str = "loomrt inspection") -> str:
        """A self-contained report: tokens with entropy and surprisal, the logit-lens table and
        attention heat maps (choose layer and head; or the mean over heads)."""
        page = _report(self, title)
        if path is not None:
            _lib.write_text(path, page)
        return page


def inspect_model(model: Any, prompt: Union[str, Sequence[int]], top_k: int = 5, attention: bool = True) -> Inspection:
    """Run ``prompt`` (text or token ids) through ``model`` recording hidden states, attention
    probabilities, logits and the logit lens (see :class:`Inspection`)."""
    top_k = _lib.int_arg("top_k", top_k, 1, 100)
    ids = model._prompt_ids(prompt, False)
    T = len(ids)
    info = model.info
    L, H, D = info["layers"], info["heads"], info["hidden_size"]
    s = model.session(context=T)
    hidden = np.zeros((L + 1, T, D), dtype=np.float32)
    attn = np.zeros((L, H, T, T), dtype=np.float32) if attention else None
    _lib.check(lib.lrt_session_inspect(s._h, _fptr(hidden), _fptr(attn), 0, T, T))
    try:
        logits = s.eval(ids, all_logits=True).copy()
    finally:
        _lib.check(lib.lrt_session_inspect(s._h, ffi.NULL, ffi.NULL, 0, 0, 0))
    V = logits.shape[1]
    lens_top = np.zeros((L + 1, T, top_k), dtype=np.int64)
    lens_p = np.zeros((L + 1, T, top_k), dtype=np.float64)
    lens_h = np.zeros((L + 1, T), dtype=np.float64)
    out = np.empty((T, V), dtype=np.float32)
    for l in range(L + 1):
        _lib.check(lib.lrt_session_lens(s._h, _fptr(hidden[l]), T, _fptr(out)))
        lp = _log_softmax(out)
        p = np.exp(lp)
        order = np.argsort(-lp, axis=1, kind="stable")[:, :top_k]
        lens_top[l] = order
        lens_p[l] = np.take_along_axis(p, order, axis=1)
        lens_h[l] = -(p * lp).sum(axis=1)
    lp = _log_softmax(logits)
    entropy = -(np.exp(lp) * lp).sum(axis=1)
    surprisal = np.full(T, np.nan)
    for t in range(T - 1):
        surprisal[t] = -lp[t, ids[t + 1]]
    tok = model.tokenizer
    texts = [tok.decode([i]) if tok is not None and i < tok.vocab_size else str(i) for i in ids]
    vocab_text = {}
    if tok is not None:
        for i in set(int(x) for x in lens_top.ravel()):
            vocab_text[i] = tok.decode([i]) if i < tok.vocab_size else ""
    return Inspection(token_ids=list(ids), tokens=texts, hidden=hidden,
                      attentions=attn if attn is not None else np.zeros((0, H, T, T), np.float32),
                      logits=logits, lens_top=lens_top, lens_top_probs=lens_p, lens_entropy=lens_h,
                      entropy=entropy, surprisal=surprisal, model=model.path, vocab_text=vocab_text)


def _report(ins: Inspection, title: str) -> str:
    T = len(ins.token_ids)
    L = ins.lens_top.shape[0] - 1
    head = "".join(f"<th>{html.escape(repr(t)[1:-1])}</th>" for t in ins.tokens)
    ent = "".join(f"<td>{e:.2f}</td>" for e in ins.entropy)
    sur = "".join("<td>-</td>" if np.isnan(x) else f"<td>{x:.2f}</td>" for x in ins.surprisal)
    lens_rows = []
    for l in range(L + 1):
        cells = []
        for t in range(T):
            i, p = int(ins.lens_top[l, t, 0]), float(ins.lens_top_probs[l, t, 0])
            txt = ins.vocab_text.get(i, str(i))
            alt = ", ".join(f"{ins.vocab_text.get(int(j), str(int(j)))!r} {q:.3f}"
                            for j, q in zip(ins.lens_top[l, t], ins.lens_top_probs[l, t]))
            cells.append(f'<td class="lens" style="background:rgba(31,119,180,{min(p, 1.0) * 0.8:.2f})" '
                         f'title="{html.escape(alt)}">{html.escape(repr(txt)[1:-1])}</td>')
        name = "embedding" if l == 0 else f"layer {l}"
        lens_rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    data = json.dumps({"tokens": ins.tokens, "att": ins.attentions.tolist()}).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ddd;padding:2px 5px;font-family:ui-monospace,monospace}}
canvas{{border:1px solid #ccc;image-rendering:pixelated}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(ins.model)} &middot; {T} tokens &middot; {L} layers</p>
<h2>Tokens</h2>
<table id="tokens"><tr><th></th>{head}</tr><tr><th>entropy (nats)</th>{ent}</tr>
<tr><th>surprisal of next</th>{sur}</tr></table>
<h2>Logit lens (top token per layer and position; hover for the top {ins.lens_top.shape[2]})</h2>
<table id="lens"><tr><th></th>{head}</tr>{''.join(lens_rows)}</table>
<h2>Attention</h2>
<p>layer <select id="layer"></select> head <select id="head"></select></p>
<canvas id="att" width="{max(T, 1) * 16}" height="{max(T, 1) * 16}"></canvas>
<script type="application/json" id="inspect-data">{data}</script>
<script>
(function(){{
  var d = JSON.parse(document.getElementById('inspect-data').textContent);
  var ls = document.getElementById('layer'), hs = document.getElementById('head');
  var cv = document.getElementById('att'), cx = cv.getContext('2d'), T = d.tokens.length;
  for (var l = 0; l < d.att.length; l++) ls.add(new Option(String(l + 1), String(l)));
  var H = d.att.length ? d.att[0].length : 0;
  hs.add(new Option('mean', '-1'));
  for (var h = 0; h < H; h++) hs.add(new Option(String(h), String(h)));
  function draw(){{
    if (!d.att.length) return;
    var l = +ls.value, h = +hs.value, c = 16;
    for (var i = 0; i < T; i++) for (var j = 0; j < T; j++) {{
      var v = 0;
      if (h < 0) {{ for (var k = 0; k < H; k++) v += d.att[l][k][i][j]; v /= H; }} else v = d.att[l][h][i][j];
      var g = Math.round(255 * (1 - Math.sqrt(v)));
      cx.fillStyle = 'rgb(' + g + ',' + g + ',255)';
      cx.fillRect(j * c, i * c, c, c);
    }}
  }}
  ls.onchange = draw; hs.onchange = draw; draw();
  document.body.setAttribute('data-ready', String(T));
}})();
</script>
</body></html>
"""
