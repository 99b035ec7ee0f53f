"""Weaving: several models write one token stream, and a trace says who wrote each token.

>>> import loomrt
>>> prose, code = loomrt.load("smollm2.gguf"), loomrt.load("smollm2-code.gguf")
>>> w = loomrt.weave([prose, code], weights=[0.7, 0.3], mode="mix")
>>> g = w.generate("Here is a function that adds two numbers:", max_tokens=40)
>>> g.trace.to_html("trace.html")

The combination runs in the C core (csrc/weave/): every model keeps its own session and KV
cache, the next-token distributions are combined elementwise by the mode's formula
(docs/weaving.md), and the seeded sampler draws from the result. Same models, prompt,
weights, settings and seed give the same tokens and the same trace bits on every machine.

Modes: ``mix`` (p = sum w_i p_i), ``product`` (logits sum w_i z_i), ``contrast`` (two models:
expert, amateur; Li et al. 2022) and ``proxy`` (three models: base, expert, anti-expert:
z_base + alpha (z_expert - z_anti)). Weights are static, a per-step ``schedule`` (a list of
weight rows) or ``ramp`` (piecewise-linear knots), a C ``rule`` (``confidence``, or ``route``
with weights for prose and for fenced code), or a Python callback ``weights=f(step, weave)``
called before every step (slower: one Python call per token).
"""
from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import platform
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _lib, errors
from .sampling import StopScanner
from ._lib import ffi, lib

MODES = {"mix": 0, "product": 1, "contrast": 2, "proxy": 3}
MODE_NAMES = {v: k for k, v in MODES.items()}
RULES = ("none", "confidence", "route")
WEAVE_RECEIPT_FORMAT = "loomrt-weave-receipt"
WEAVE_RECEIPT_VERSION = 1
FINISH = {1: "stop", 2: "length", 3: "context", 4: "stop"}
# colours of models 0, 1, ... in the terminal and the HTML trace
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
RICH_COLOURS = ["blue", "red", "green", "magenta", "yellow", "cyan", "bright_black", "bright_magenta"]

WeightsLike = Union[None, Sequence[float], Callable[[int, "Weave"], Sequence[float]]]


# ---- thin bindings -----------------------------------------------------------------------------


def _weights_arg(name: str, weights: Any, n: int) -> List[float]:
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise errors.ArgumentTypeError(f"{name} must be a list of {n} numbers, got {type(weights).__name__}")
    vals = [_lib.float_arg(f"{name}[{i}]", v) for i, v in enumerate(weights)]
    if len(vals) != n:
        raise errors.InvalidArgumentError(f"{name} must hold one weight per model: {len(vals)} weights for {n} models")
    return vals


def _doubles(vals: Sequence[float]) -> Any:
    return ffi.new("double[]", [float(v) for v in vals])


class _RowReader:
    """Reads trace rows through buffers allocated once per generation (one row per step)."""

    def __init__(self, n: int, top_k: int):
        self.n, self.top_k = n, top_k
        self.tok, self.dom = ffi.new("int32_t *"), ffi.new("int32_t *")
        self.comb, self.samp = ffi.new("double *"), ffi.new("double *")
        self.wt, self.pr, self.sh = ffi.new("double[]", n), ffi.new("double[]", n), ffi.new("double[]", n)
        self.rk = ffi.new("int64_t[]", n)
        self.ids = ffi.new("int32_t[]", max(top_k, 1))
        self.ps = ffi.new("double[]", max(top_k, 1))
        self.cnt = ffi.new("int64_t *")

    def read(self, h: Any, row: int) -> Dict[str, Any]:
        n, top_k = self.n, self.top_k
        _lib.check(lib.lrt_weave_trace_row(h, row, self.tok, self.dom, self.comb, self.samp, self.wt, self.pr,
                                           self.rk, self.sh, n))
        tops = []
        ids, ps, cnt = self.ids, self.ps, self.cnt
        for m in list(range(n)) + [-1]:
            if top_k == 0:
                tops.append([])
                continue
            _lib.check(lib.lrt_weave_trace_top(h, row, m, ids, ps, top_k, cnt))
            k = min(cnt[0], top_k)
            tops.append([[a, b] for a, b in zip(ffi.unpack(ids, k), ffi.unpack(ps, k))])
        return {"token": int(self.tok[0]), "dominant": int(self.dom[0]), "combined": float(self.comb[0]),
                "sampled": float(self.samp[0]), "weights": ffi.unpack(self.wt, n), "probs": ffi.unpack(self.pr, n),
                "ranks": ffi.unpack(self.rk, n), "shares": ffi.unpack(self.sh, n), "top": tops[:n],
                "combined_top": tops[n]}


def _combined_logits(h: Any) -> np.ndarray:
    out = ffi.new("const float **")
    v = ffi.new("int64_t *")
    _lib.check(lib.lrt_weave_logits(h, out, v))
    return np.frombuffer(ffi.buffer(out[0], v[0] * 4), dtype=np.float32).copy()


# ---- the trace ---------------------------------------------------------------------------------


@dataclasses.dataclass
class WeaveTrace:
    """Per-token record of a woven generation (see :func:`lrt_weave_trace_row` in loomrt.h).

    Each row: ``step``, ``token``, ``text`` (the text the step gave), ``token_text`` (the
    token alone, decoded), ``weights`` in force, each model's ``probs`` and ``ranks`` of the
    token and its own ``top`` tokens, ``combined`` (the combined distribution's probability),
    ``sampled`` (the probability the sampler drew it with), ``shares`` (mix: w_i p_i / p, sums
    to 1; other modes: each model's additive contribution to the token's combined logit),
    ``influence`` (w_i p_i normalised over the models: what the colours show) and
    ``dominant`` (the model with the largest w_i p_i)."""

    models: List[str]
    mode: str
    rows: List[Dict[str, Any]]
    prompt: str = ""

    def influence_totals(self) -> List[float]:
        """Mean influence of each model over the tokens."""
        n = len(self.models)
        if not self.rows:
            return [0.0] * n
        return [sum(r["influence"][i] for r in self.rows) / len(self.rows) for i in range(n)]

    def to_jsonl(self, path: Optional[Union[str, os.PathLike]] = None) -> str:
        """One JSON object per line: a header line (models, mode, prompt), then one per token."""
        head = {"type": "weave", "models": self.models, "mode": self.mode, "prompt": self.prompt}
        lines = [json.dumps(head, ensure_ascii=False)] + [json.dumps(dict(r, type="token"), ensure_ascii=False)
                                                          for r in self.rows]
        text = "\n".join(lines) + "\n"
        if path is not None:
            _lib.write_text(path, text)
        return text

    def to_html(self, path: Optional[Union[str, os.PathLike]] = None, title: str = "loomrt weave trace") -> str:
        """A self-contained HTML page: the text with each token coloured by its dominant model,
        a hover card with the numbers, and a per-model influence chart."""
        page = _html_page(self, title)
        if path is not None:
            _lib.write_text(path, page)
        return page

    def rich_text(self) -> Any:
        """The generated text as a ``rich.text.Text``, each token coloured by its dominant model,
        followed by a legend."""
        from rich.text import Text

        t = Text()
        if self.prompt:
            t.append(self.prompt, style="dim")
        for r in self.rows:
            col = RICH_COLOURS[r["dominant"] % len(RICH_COLOURS)]
            strong = max(r["influence"]) >= 0.75
            t.append(r["text"], style=f"bold {col}" if strong else col)
        t.append("\n")
        for i, (name, share) in enumerate(zip(self.models, self.influence_totals())):
            t.append(f"  \u25a0 {name}", style=RICH_COLOURS[i % len(RICH_COLOURS)])
            t.append(f" {share * 100:.1f}%")
        return t

    def print(self, console: Any = None) -> None:
        """Print :meth:`rich_text` (to a new ``rich`` console on stdout by default)."""
        from rich.console import Console

        (console or Console()).print(self.rich_text())

    def to_ansi(self, width: int = 100) -> str:
        """The coloured text as a string with ANSI escapes."""
        from rich.console import Console

        c = Console(record=True, width=width, force_terminal=True, color_system="standard", file=open(os.devnull, "w"))
        c.print(self.rich_text())
        return c.export_text(styles=True)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write by extension: .html, .jsonl, or anything else as ANSI-coloured text."""
        p = os.fspath(path)
        if p.endswith((".html", ".htm")):
            self.to_html(p)
        elif p.endswith((".jsonl", ".json")):
            self.to_jsonl(p)
        else:
            _lib.write_text(p, self.to_ansi())


def _html_page(tr: WeaveTrace, title: str) -> str:
    n = len(tr.models)
    cols = [PALETTE[i % len(PALETTE)] for i in range(n)]
    spans = []
    for k, r in enumerate(tr.rows):
        d = r["dominant"]
        alpha = 0.25 + 0.6 * max(r["influence"])
        rgb = cols[d].lstrip("#")
        bg = f"rgba({int(rgb[0:2], 16)},{int(rgb[2:4], 16)},{int(rgb[4:6], 16)},{alpha:.2f})"
        shown = r["text"] if r["text"] else ""
        spans.append(f'<span class="tok" data-i="{k}" data-token="{r["token"]}" data-model="{d}" '
                     f'style="background:{bg}">{html.escape(shown)}</span>')
    # influence chart: one stacked column per token
    cw = max(4, min(24, 720 // max(len(tr.rows), 1)))
    width = max(cw * len(tr.rows), 60)
    bars = []
    for k, r in enumerate(tr.rows):
        y = 0.0
        for i in range(n):
            h = 60.0 * r["influence"][i]
            if h > 0:
                bars.append(f'<rect x="{k * cw}" y="{y:.2f}" width="{cw - 1}" height="{h:.2f}" fill="{cols[i]}">'
                            f'<title>token {k}: {html.escape(tr.models[i])} {r["influence"][i] * 100:.1f}%</title></rect>')
            y += h
    totals = tr.influence_totals()
    legend = "".join(f'<span class="key"><span class="sw" style="background:{cols[i]}"></span>'
                     f'{html.escape(tr.models[i])}: {totals[i] * 100:.1f}%</span>' for i in range(n))
    data = json.dumps({"models": tr.models, "mode": tr.mode, "rows": tr.rows}, ensure_ascii=True)
    data = data.replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}}
#text{{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.7;border:1px solid #ccc;padding:1em}}
.prompt{{color:#777}} .tok{{border-radius:3px;cursor:default}} .tok:hover{{outline:2px solid #000}}
#card{{position:fixed;display:none;background:#fff;border:1px solid #888;padding:.6em;font-size:12px;
box-shadow:2px 2px 6px #0003;max-width:32em;z-index:9}}
#card table{{border-collapse:collapse}} #card td,#card th{{padding:1px 6px;text-align:right}}
.key{{margin-right:1.5em}} .sw{{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>mode <b>{html.escape(tr.mode)}</b> &middot; {len(tr.rows)} tokens &middot; {legend}</p>
<div id="text"><span class="prompt">{html.escape(tr.prompt)}</span>{"".join(spans)}</div>
<h2>Influence per token</h2>
<svg id="chart" width="{width}" height="60" viewBox="0 0 {width} 60" role="img">{"".join(bars)}</svg>
<div id="card"></div>
<script type="application/json" id="trace-data">{data}</script>
<script>
(function(){{
  var data = JSON.parse(document.getElementById('trace-data').textContent);
  var card = document.getElementById('card');
  function esc(s){{return String(s).replace(/[&<>"]/g,function(c){{return {{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}}[c];}});}}
  function pct(x){{return (100*x).toFixed(2)+'%';}}
  function show(ev){{
    var r = data.rows[+ev.target.getAttribute('data-i')];
    var h = '<b>token '+r.token+'</b> '+esc(JSON.stringify(r.token_text))+' &middot; step '+r.step+
      '<br>combined p '+pct(r.combined)+' &middot; sampled p '+pct(r.sampled)+
      '<table><tr><th>model</th><th>weight</th><th>p</th><th>rank</th><th>share</th><th>top</th></tr>';
    for (var i = 0; i < data.models.length; i++) {{
      var top = r.top[i].map(function(t){{return t[0]+':'+pct(t[1]);}}).join(' ');
      h += '<tr><td>'+esc(data.models[i])+'</td><td>'+r.weights[i].toFixed(3)+'</td><td>'+pct(r.probs[i])+
        '</td><td>'+r.ranks[i]+'</td><td>'+r.shares[i].toFixed(4)+'</td><td>'+esc(top)+'</td></tr>';
    }}
    card.innerHTML = h + '</table>';
    card.style.display = 'block';
    card.style.left = Math.min(ev.clientX + 12, window.innerWidth - 420) + 'px';
    card.style.top = (ev.clientY + 16) + 'px';
  }}
  var toks = document.querySelectorAll('.tok');
  for (var k = 0; k < toks.length; k++) {{
    toks[k].addEventListener('mouseover', show);
    toks[k].addEventListener('mouseout', function(){{card.style.display='none';}});
  }}
  document.body.setAttribute('data-ready', String(toks.length));
}})();
</script>
</body></html>
"""


# ---- the weave -----------------------------------------------------------------------------------


@dataclasses.dataclass
class WeaveGeneration:
    """Result of :meth:`Weave.generate`."""

    text: str
    token_ids: List[int]
    prompt_token_ids: List[int]
    finish_reason: str
    trace: WeaveTrace
    seconds: float = 0.0
    receipt: Optional[Dict[str, Any]] = None


class Weave:
    """N models (sharing token ids) generating one stream; see the module docstring."""

    def __init__(self, models: Sequence[Any], weights: WeightsLike = None, mode: str = "mix", *,
                 schedule: Optional[Sequence[Sequence[float]]] = None,
                 ramp: Optional[Sequence[Any]] = None, rule: Optional[str] = None,
                 route: Optional[Dict[str, Sequence[float]]] = None, alpha: Optional[float] = None,
                 amateur_temperature: Optional[float] = None, trace_top_k: int = 5,
                 context: Optional[int] = None, threads: Optional[int] = None,
                 parallel: Optional[bool] = None, names: Optional[Sequence[str]] = None):
        from .model import Model

        if isinstance(models, (str, bytes, os.PathLike)) or not isinstance(models, Sequence):
            raise errors.ArgumentTypeError("models must be a list of loaded models or paths")
        if not 1 <= len(models) <= 16:
            raise errors.InvalidArgumentError(f"a weave has 1 to 16 models, got {len(models)}")
        self.models: List[Model] = [m if isinstance(m, Model) else Model(os.fspath(m), threads=threads)
                                    for m in models]
        n = len(self.models)
        if context is None:
            context = min(m.context_length for m in self.models)
        total = _lib.int_arg("threads", threads, 1, 1024) if threads is not None else min(m.threads for m in self.models)
        if parallel is not None and not isinstance(parallel, bool):
            raise errors.ArgumentTypeError(f"parallel must be True, False or None, got {type(parallel).__name__}")
        # parallel: the models step at once, each on its own thread with its share of the
        # threads (None: when there are at least as many threads as models). No bit changes.
        self.parallel = (total >= n >= 2) if parallel is None else (parallel and n >= 2)
        if self.parallel:
            per = [max(1, total // n + (1 if i < total % n else 0)) for i in range(n)]
        else:
            per = [total] * n
        self.session_threads = per
        self.sessions = [m.session(context=min(context, m.context_length), threads=t) for m, t in zip(self.models, per)]
        self.names = list(names) if names is not None else _short_names(self.models)
        if len(self.names) != n:
            raise errors.InvalidArgumentError(f"names must hold one name per model ({n})")
        arr = ffi.new("lrt_session *[]", [s._h for s in self.sessions])
        out = ffi.new("lrt_weave **")
        _lib.check(lib.lrt_weave_new(arr, n, out))
        self._h = ffi.gc(out[0], lib.lrt_weave_free)
        self._arr = arr
        if self.parallel:
            _lib.check(lib.lrt_weave_set_int(self._h, lib.LRT_WEAVE_PARALLEL, min(n, total)))
        if mode not in MODES:
            raise errors.InvalidArgumentError(f"unknown weave mode {mode!r}; the modes are {', '.join(MODES)}")
        _lib.check(lib.lrt_weave_set_mode(self._h, MODES[mode]))
        self.mode = mode
        self.callback: Optional[Callable[[int, "Weave"], Sequence[float]]] = None
        self.weights: Optional[List[float]] = None
        if callable(weights):
            self.callback = weights
        elif weights is not None:
            self.set_weights(weights)
        self.schedule: Optional[List[List[float]]] = None
        self.ramp: Optional[List[List[float]]] = None
        if schedule is not None and ramp is not None:
            raise errors.InvalidArgumentError("give either schedule (a list of weight rows) or ramp (knots), not both")
        if schedule is not None:
            rows = [_weights_arg(f"schedule[{k}]", r, n) for k, r in enumerate(schedule)]
            if not rows:
                raise errors.InvalidArgumentError("schedule is empty: give at least one row of weights")
            flat = [v for r in rows for v in r]
            _lib.check(lib.lrt_weave_set_schedule(self._h, lib.LRT_WEAVE_SCHEDULE_LIST, _doubles(flat), len(flat)))
            self.schedule = rows
        if ramp is not None:
            knots = []
            for k, kn in enumerate(ramp):
                if not isinstance(kn, Sequence) or len(kn) != 2:
                    raise errors.InvalidArgumentError(f"ramp[{k}] must be (step, [weights]), got {kn!r}")
                knots.append([_lib.float_arg(f"ramp[{k}] step", kn[0])] + _weights_arg(f"ramp[{k}] weights", kn[1], n))
            if not knots:
                raise errors.InvalidArgumentError("ramp is empty: give at least one (step, [weights]) knot")
            flat = [v for r in knots for v in r]
            _lib.check(lib.lrt_weave_set_schedule(self._h, lib.LRT_WEAVE_SCHEDULE_RAMP, _doubles(flat), len(flat)))
            self.ramp = knots
        self.rule = rule or "none"
        self.route: Optional[Dict[str, List[float]]] = None
        params: List[float] = []
        if not isinstance(self.rule, str):
            raise errors.ArgumentTypeError(f"rule must be a str, got {type(self.rule).__name__}")
        if self.rule == "route":
            if not isinstance(route, dict) or set(route) != {"prose", "code"}:
                raise errors.InvalidArgumentError('rule "route" needs route={"prose": [weights], "code": [weights]}')
            self.route = {"prose": _weights_arg("route['prose']", route["prose"], n),
                          "code": _weights_arg("route['code']", route["code"], n)}
            params = self.route["prose"] + self.route["code"]
        elif route is not None:
            raise errors.InvalidArgumentError('route= is used only with rule="route"')
        raw = self.rule.encode("utf-8")
        _lib.check(lib.lrt_weave_set_rule(self._h, raw, len(raw), _doubles(params) if params else ffi.NULL, len(params)))
        self.alpha = alpha
        if alpha is not None:
            _lib.check(lib.lrt_weave_set_float(self._h, lib.LRT_WEAVE_ALPHA, _lib.float_arg("alpha", alpha)))
        self.amateur_temperature = amateur_temperature
        if amateur_temperature is not None:
            _lib.check(lib.lrt_weave_set_float(self._h, lib.LRT_WEAVE_AMATEUR_TEMPERATURE,
                                               _lib.float_arg("amateur_temperature", amateur_temperature)))
        self.trace_top_k = _lib.int_arg("trace_top_k", trace_top_k, 0, 64)
        _lib.check(lib.lrt_weave_set_int(self._h, lib.LRT_WEAVE_TRACE_TOP_K, self.trace_top_k))
        self.trace: Optional[WeaveTrace] = None
        self.step_weights: List[List[float]] = []  # callback weights given at each step

    # ---- settings ------------------------------------------------------------------------

    def set_weights(self, weights: Sequence[float]) -> None:
        """Static weights (one per model, >= 0, not all 0); a schedule or rule takes precedence."""
        vals = _weights_arg("weights", weights, len(self.models))
        _lib.check(lib.lrt_weave_set_weights(self._h, _doubles(vals), len(vals)))
        self.weights = vals

    def _info(self, key: int) -> int:
        out = ffi.new("int64_t *")
        _lib.check(lib.lrt_weave_get_int(self._h, key, out))
        return int(out[0])

    @property
    def vocab_size(self) -> int:
        """Columns of the combined logits (the smallest model's)."""
        return self._info(lib.LRT_WEAVE_INFO_VOCAB)

    @property
    def shared_vocab_size(self) -> int:
        """Ids every model shares; ids from here to :attr:`vocab_size` are masked."""
        return self._info(lib.LRT_WEAVE_INFO_SHARED_VOCAB)

    def combined_logits(self) -> np.ndarray:
        """The combined logits the last step sampled from (masked ids are -inf)."""
        return _combined_logits(self._h)

    # ---- generation ------------------------------------------------------------------------

    def _configure(self, sampling: Dict[str, Any]) -> Dict[str, Any]:
        from .sampling import sampling_params

        params = sampling_params(sampling)
        h = self._h
        floats = {"temperature": lib.LRT_PARAM_TEMPERATURE, "top_p": lib.LRT_PARAM_TOP_P,
                  "min_p": lib.LRT_PARAM_MIN_P, "repetition_penalty": lib.LRT_PARAM_REPEAT_PENALTY}
        for name, key in floats.items():
            _lib.check(lib.lrt_weave_set_float(h, key, _lib.float_arg(name, getattr(params, name))))
        _lib.check(lib.lrt_weave_set_int(h, lib.LRT_PARAM_TOP_K, _lib.int_arg("top_k", params.top_k, 0, (1 << 63) - 1)))
        seed = params.seed
        if isinstance(seed, (bool, np.bool_)) or not hasattr(seed, "__index__"):
            raise errors.ArgumentTypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        seed = int(seed.__index__())
        if not 0 <= seed < 1 << 64:
            raise errors.InvalidArgumentError(f"seed must be in [0, 2**64), got {seed}")
        _lib.check(lib.lrt_weave_set_int(h, lib.LRT_PARAM_SEED, seed - (1 << 64) if seed >= 1 << 63 else seed))
        return dataclasses.asdict(params)

    def iter_steps(self, prompt: Any, max_tokens: int = 256, *, chat: bool = False,
                   **sampling: Any) -> Iterator[Any]:
        """Yield ``(row, combined_logits)`` for every generated token: the trace row and the
        float32 logits the sampler drew it from (for analysis; :meth:`generate` is faster)."""
        box: List[np.ndarray] = []
        for row in self._steps(prompt, max_tokens, chat, sampling, lambda r, lg: box.append(lg())):
            if "flush" not in row:
                yield row, box.pop()

    def _steps(self, prompt: Any, max_tokens: int, chat: bool, sampling: Dict[str, Any],
               on_row: Callable[[Dict[str, Any], Callable[[], np.ndarray]], None]) -> Iterator[Dict[str, Any]]:
        """Run the generation; yield each trace row (text included) as it is made."""
        max_tokens = _lib.int_arg("max_tokens", max_tokens, 0, 1 << 62)
        self._configure(sampling)
        ids = self.models[0]._prompt_ids(prompt, chat)
        self.prompt_ids = ids
        self.step_weights = []
        self.finish_reason = "length"
        arr = ffi.new("int32_t[]", ids)
        _lib.check(lib.lrt_weave_set_int(self._h, lib.LRT_PARAM_MAX_TOKENS, max_tokens))
        _lib.check(lib.lrt_weave_prompt_tokens(self._h, arr, len(ids), 0))
        tok = ffi.new("int32_t *")
        txt = ffi.new("const char **")
        tlen = ffi.new("size_t *")
        n = len(self.models)
        tk0 = self.models[0].tokenizer
        reader = _RowReader(n, self.trace_top_k)
        step = 0
        while True:
            if self.callback is not None:
                w = _weights_arg(f"the weights callback's result at step {step}", self.callback(step, self), n)
                try:
                    self.set_weights(w)
                except errors.InvalidArgumentError as exc:
                    raise errors.InvalidArgumentError(f"the weights callback's result at step {step}: {exc}") from None
                self.step_weights.append(w)
            _lib.check(lib.lrt_weave_step(self._h, tok, txt, tlen))
            piece = ffi.unpack(txt[0], tlen[0]).decode("utf-8", "replace") if tlen[0] else ""
            if tok[0] < 0:
                reason = ffi.new("int64_t *")
                _lib.check(lib.lrt_weave_get_int(self._h, lib.LRT_WEAVE_INFO_FINISH_REASON, reason))
                self.finish_reason = FINISH.get(int(reason[0]), "stop")
                if piece:
                    yield {"flush": piece}
                return
            row = reader.read(self._h, step)
            row["step"] = step
            row["text"] = piece
            t = row["token"]
            row["token_text"] = tk0.decode([t]) if tk0 is not None and t < tk0.vocab_size else ""
            infl = [row["weights"][i] * row["probs"][i] for i in range(n)]
            tot = sum(infl)
            row["influence"] = [x / tot if tot > 0 else 0.0 for x in infl]
            on_row(row, self.combined_logits)  # a getter: the copy is made only when asked for
            yield row
            step += 1

    def stream(self, prompt: Any, max_tokens: int = 256, *, stop: Optional[Sequence[str]] = None,
               chat: bool = False, **sampling: Any) -> Iterator[str]:
        """Yield text pieces as the weave generates them (complete UTF-8 characters, cut before
        the first stop string); :attr:`trace` holds the trace afterwards."""
        g = self._run(prompt, max_tokens, stop, chat, sampling, receipt=False)
        yield from g

    def _run(self, prompt: Any, max_tokens: int, stop: Optional[Sequence[str]], chat: bool,
             sampling: Dict[str, Any], receipt: bool, out: Optional[Dict[str, Any]] = None) -> Iterator[str]:
        if stop is not None and (isinstance(stop, str) or not all(isinstance(s, str) for s in stop)):
            raise errors.InvalidArgumentError("stop must be a list of strings")
        scan = StopScanner(stop or [])
        rows: List[Dict[str, Any]] = []
        digests: List[str] = []
        concat = hashlib.sha256()
        from .audit import canonical_logits_bytes

        def on_row(row: Dict[str, Any], logits: Callable[[], np.ndarray]) -> None:
            rows.append(row)
            if receipt:
                b = canonical_logits_bytes(logits())
                digests.append(hashlib.sha256(b).hexdigest())
                concat.update(b)

        prompt_text = prompt if isinstance(prompt, str) and not chat else ""
        self.trace = WeaveTrace(list(self.names), self.mode, rows, prompt_text)
        t0 = time.perf_counter()
        try:
            for r in self._steps(prompt, max_tokens, chat, sampling, on_row):
                text = scan.feed(r["flush"] if "flush" in r else r["text"])
                if scan.stopped:
                    self.finish_reason = "stop"
                    if text:
                        yield text
                    return
                if text:
                    yield text
            text = scan.finish()
            if scan.stopped:
                self.finish_reason = "stop"
            if text:
                yield text
        finally:
            if out is not None:
                out["seconds"] = time.perf_counter() - t0
                out["digests"] = digests
                out["logits_sha256"] = concat.hexdigest()

    def generate(self, prompt: Any, max_tokens: int = 256, *, stop: Optional[Sequence[str]] = None,
                 chat: bool = False, receipt: bool = False, **sampling: Any) -> WeaveGeneration:
        """Generate a woven completion: text, token ids, finish reason, the trace and (with
        ``receipt=True``) a receipt that :func:`loomrt.verify_receipt` replays."""
        info: Dict[str, Any] = {}
        text = "".join(self._run(prompt, max_tokens, stop, chat, sampling, receipt, info))
        assert self.trace is not None
        ids = [r["token"] for r in self.trace.rows]
        rec = None
        if receipt:
            rec = self._receipt(ids, info, max_tokens, sampling, stop, chat)
        return WeaveGeneration(text=text, token_ids=ids, prompt_token_ids=list(self.prompt_ids),
                               finish_reason=self.finish_reason, trace=self.trace, seconds=info.get("seconds", 0.0),
                               receipt=rec)

    def chat(self, messages: Any, max_tokens: int = 256, **kwargs: Any) -> WeaveGeneration:
        """Answer a chat (rendered with model 0's chat template)."""
        return self.generate(messages, max_tokens, chat=True, **kwargs)

    # ---- receipts ----------------------------------------------------------------------------

    def settings(self) -> Dict[str, Any]:
        """The weave's settings as recorded in receipts."""
        return {"mode": self.mode, "weights": self.weights, "schedule": self.schedule, "ramp": self.ramp,
                "rule": self.rule, "route": self.route, "alpha": self.alpha,
                "amateur_temperature": self.amateur_temperature, "trace_top_k": self.trace_top_k,
                "callback_weights": [list(w) for w in self.step_weights] if self.callback is not None else None}

    def _receipt(self, ids: List[int], info: Dict[str, Any], max_tokens: int, sampling: Dict[str, Any],
                 stop: Optional[Sequence[str]], chat: bool) -> Dict[str, Any]:
        from .audit import model_hash, rolling_hash, tokenizer_hash, tokens_sha256
        from .sampling import sampling_params

        models = []
        for m, name in zip(self.models, self.names):
            mh = model_hash(m)
            models.append({"hash": mh.hash, "hash_scheme": mh.scheme, "files": [dict(f) for f in mh.files],
                           "path": os.path.abspath(m.path), "label": name, "name": m.info.get("name", ""),
                           "architecture": m.info.get("architecture", ""), "quantize": getattr(m, "quantize", None),
                           "int8_activations": bool(getattr(m, "int8_activations", False)),
                           "tokenizer_hash": tokenizer_hash(m)})
        s = dataclasses.asdict(sampling_params(sampling))
        return {
            "format": WEAVE_RECEIPT_FORMAT, "version": WEAVE_RECEIPT_VERSION, "loomrt_version": _lib.version(),
            "numerics_version": _lib.numerics_version(), "models": models, "weave": self.settings(),
            "sampling": {k: s[k] for k in sorted(s)}, "max_tokens": int(max_tokens),
            "context_length": int(min(x.context for x in self.sessions)), "stop": list(stop) if stop else [],
            "chat": bool(chat), "prompt_token_ids": [int(t) for t in self.prompt_ids], "output_token_ids": ids,
            "finish_reason": self.finish_reason, "step_logits_sha256": info["digests"],
            "logits_rolling_sha256": rolling_hash(info["digests"], ids), "tokens_sha256": tokens_sha256(ids),
            "logits_sha256": info["logits_sha256"],
            "made_on": {"kernel_path": _lib.kernel_path(), "machine": platform.machine(), "system": platform.system()},
        }


def _short_names(models: Sequence[Any]) -> List[str]:
    names = []
    for i, m in enumerate(models):
        base = os.path.basename(os.path.normpath(m.path)) or f"model {i}"
        names.append(base)
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    return names


def weave(models: Sequence[Any], weights: WeightsLike = None, mode: str = "mix", **kwargs: Any) -> Weave:
    """Weave loaded models (or paths) into one generator: ``loomrt.weave([m1, m2],
    weights=[0.7, 0.3], mode="mix")``. See :class:`Weave` and docs/weaving.md."""
    return Weave(models, weights, mode, **kwargs)


# ---- receipt verification ------------------------------------------------------------------------


def check_weave_receipt(r: Dict[str, Any]) -> None:
    """Shape checks of a weave receipt (FormatError / UnsupportedError)."""
    def bad(msg: str) -> errors.FormatError:
        return errors.FormatError(f"not a valid loomrt weave receipt: {msg}")

    if r.get("version") != WEAVE_RECEIPT_VERSION:
        raise errors.UnsupportedError(f"weave receipt version {r.get('version')!r}; this loomrt reads version "
                                      f"{WEAVE_RECEIPT_VERSION}")
    ms = r.get("models")
    if not isinstance(ms, list) or not ms or not all(isinstance(m, dict) and isinstance(m.get("hash"), str) for m in ms):
        raise bad('"models" must be a list of models with a "hash"')
    w = r.get("weave")
    if not isinstance(w, dict) or w.get("mode") not in MODES:
        raise bad('"weave.mode" is missing or unknown')
    for key in ("prompt_token_ids", "output_token_ids"):
        v = r.get(key)
        if not isinstance(v, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in v):
            raise bad(f'"{key}" must be a list of integers')
    d = r.get("step_logits_sha256")
    if not isinstance(d, list) or len(d) != len(r["output_token_ids"]):
        raise bad('"step_logits_sha256" must hold one digest per output token')
    if not isinstance(r.get("sampling"), dict):
        raise bad('"sampling" is missing')


def verify_weave_receipt(r: Dict[str, Any], models: Any = None, *, threads: Optional[int] = None) -> Any:
    """Replay a weave receipt: the same models (by hash), weave settings, prompt and sampler
    settings must give the same combined logits digest and token at every step. ``models``:
    a list of loaded models or paths in the receipt's order (default: the recorded paths)."""
    from .audit import VerifyResult, model_hash, rolling_hash, tokens_sha256
    from .model import Model

    check_weave_receipt(r)
    rec_models = r["models"]
    if models is None:
        models = [m.get("path") for m in rec_models]
    if isinstance(models, (str, os.PathLike)) or isinstance(models, Model):
        models = [models]
    models = list(models)
    if len(models) != len(rec_models):
        return VerifyResult(False, f"the receipt weaves {len(rec_models)} models, {len(models)} were given", what="model")
    if r["numerics_version"] != _lib.numerics_version():
        return VerifyResult(False, f"the receipt was made with numerics version {r['numerics_version']}, this loomrt "
                            f"has {_lib.numerics_version()}", what="numerics_version")
    loaded = []
    for i, (m, want) in enumerate(zip(models, rec_models)):
        if m is None:
            return VerifyResult(False, f"model {i}: no path recorded; pass the models", what="model")
        if not isinstance(m, Model):
            if not os.path.exists(os.fspath(m)):
                return VerifyResult(False, f"model {i} ({want.get('label', '?')}): {os.fspath(m)} does not exist; "
                                    "pass the models", what="model")
            m = Model(os.fspath(m), threads=threads, quantize=want.get("quantize"),
                      int8_activations=bool(want.get("int8_activations", False)))
        mh = model_hash(m).hash
        if mh != want["hash"]:
            return VerifyResult(False, f"model {i}: the receipt was made with model hash {want['hash'][:16]}..., the "
                                f"model given ({m.path}) has hash {mh[:16]}...", what="model",
                                expected={"model_hash": want["hash"]}, actual={"model_hash": mh})
        loaded.append(m)
    ws = r["weave"]
    cb = ws.get("callback_weights")
    weights: WeightsLike = ws.get("weights")
    if cb is not None:
        rows = [list(x) for x in cb]
        weights = lambda step, _w: rows[min(step, len(rows) - 1)]  # noqa: E731
    wv = Weave(loaded, weights, ws["mode"], schedule=ws.get("schedule"),
               ramp=[(k[0], k[1:]) for k in ws["ramp"]] if ws.get("ramp") else None,
               rule=ws.get("rule"), route=ws.get("route"), alpha=ws.get("alpha"),
               amateur_temperature=ws.get("amateur_temperature"), trace_top_k=int(ws.get("trace_top_k", 5)),
               context=r.get("context_length"), threads=threads,
               names=[m.get("label", str(i)) for i, m in enumerate(rec_models)])
    out, prompt = r["output_token_ids"], r["prompt_token_ids"]
    n = len(out)
    info: Dict[str, Any] = {}
    got_digests: List[str] = []
    got: List[int] = []
    it = wv._steps(prompt, n, False, dict(r["sampling"]),
                   lambda row, lg: got_digests.append(hashlib.sha256(_canon(lg())).hexdigest()))
    for row in it:
        if "flush" in row:
            continue
        i = len(got)
        got.append(row["token"])
        want_d, want_t = r["step_logits_sha256"][i], out[i]
        if got_digests[i] != want_d or row["token"] != want_t:
            what = " and ".join(w for w, b in (("logits", got_digests[i] != want_d), ("token", row["token"] != want_t)) if b)
            return VerifyResult(False, f"step {i} (position {len(prompt) + i}) differs in {what}: the receipt has token "
                                f"{want_t}, the replay gives token {row['token']}", first_difference=i, what=what,
                                expected={"token": want_t, "logits_sha256": want_d},
                                actual={"token": row["token"], "logits_sha256": got_digests[i]}, steps_checked=i + 1)
    del info
    if len(got) != n:
        return VerifyResult(False, f"the replay ended after {len(got)} steps, the receipt has {n}", what="token",
                            first_difference=len(got), steps_checked=len(got))
    if rolling_hash(r["step_logits_sha256"], out) != r.get("logits_rolling_sha256") or \
            tokens_sha256(out) != r.get("tokens_sha256"):
        return VerifyResult(False, f"all {n} steps replay as recorded, but the receipt's summary hashes do not match "
                            "its per-step data (it was edited after it was made)", what="receipt", steps_checked=n)
    return VerifyResult(True, f"the weave receipt matches: all {n} steps give the same combined logits and tokens "
                        f"({len(loaded)} models, mode {ws['mode']})", steps_checked=n)


def _canon(row: np.ndarray) -> bytes:
    from .audit import canonical_logits_bytes

    return canonical_logits_bytes(row)
