"""Weaving (docs/weaving.md): N models generate one token stream through the C core.

Checked here:
* each mode's combined distribution equals a NumPy float64 evaluation of its formula from the
  models' own logits (loomrt's logits for the same tokens, read separately) -- float32
  rounding allows 2e-6 absolute on probabilities;
* a weight of 1 on one model gives that model's own generation bit for bit (mix and product);
* mix shares sum to 1; product / contrast / proxy shares are the formula's terms;
* schedules (list, ramp), the confidence and route rules and per-step Python callbacks put
  the weights the docs promise into the trace;
* woven logits and tokens are bit-identical across thread counts and kernel paths;
* bad input (other vocabularies, bad weights, unknown rules, wrong model counts) is refused
  with messages that name the problem; a padded superset vocabulary is accepted;
* the HTML trace is valid and holds every token (and renders in headless Chromium);
* weave receipts replay with loomrt.verify_receipt and the CLI.
"""
from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import loomrt
from loomrt.weave import verify_weave_receipt

import models

PROMPT = "Hello the world, then ```code``` and"
PROB_TOL = 2e-6


def _gpt2_pre(kv) -> None:
    import gguf

    kv["tokenizer.ggml.pre"] = gguf.GGUFValue(value="gpt-2", type=gguf.GGUFValueType.STRING)


def _write(path: str, seed: int, tokens=None, merges=None, vocab: int = models.VOCAB) -> str:
    cfg = dict(models.SEEDED_CONFIG, vocab_size=vocab, eos_token_id=models.EOS_ID)
    if tokens is None:
        tokens, merges = models.byte_level_vocab()
    return models.write_llama_gguf(path, models.seeded_llama_tensors(cfg, seed), cfg, tokens, merges,
                                   meta_edit=_gpt2_pre)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("weave")
    out = {k: _write(str(d / f"{k}.gguf"), s) for k, s in (("a", 11), ("b", 12), ("c", 13))}
    tokens, merges = models.byte_level_vocab()
    out["padded"] = _write(str(d / "padded.gguf"), 14, tokens + [f"<extra_{i}>" for i in range(8)], merges,
                           vocab=models.VOCAB + 8)
    other = list(tokens)
    other[260], other[261] = other[261], other[260]  # two merged tokens swapped: same size, other ids
    out["other"] = _write(str(d / "other.gguf"), 15, other, merges)
    return out


@pytest.fixture(scope="module")
def ms(paths):
    return {k: loomrt.load(p, threads=1) for k, p in paths.items()}


# ---- references ---------------------------------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max()
    return z - m - np.log(np.exp(z - m).sum())


def _own_logits(m, ids):
    return m.logits(ids)[-1]


def _reference(mode: str, zs, w, alpha=None, tau=1.0) -> np.ndarray:
    """The mode's combined distribution in float64 from the models' logits (docs/weaving.md)."""
    w = np.asarray(w, dtype=np.float64)
    if mode == "mix":
        w = w / w.sum()
        return sum(wi * _softmax(z) for wi, z in zip(w, zs))
    if mode == "product":
        return _softmax(sum(wi * z.astype(np.float64) for wi, z in zip(w, zs)))
    if mode == "contrast":
        a = 0.1 if alpha is None else alpha
        pe = _softmax(zs[0])
        head = pe >= a * pe.max()
        s = w[0] * _log_softmax(zs[0]) - w[1] * _log_softmax(zs[1].astype(np.float64) / tau)
        s[~head] = -np.inf
        return _softmax(s)
    if mode == "proxy":
        a = 1.0 if alpha is None else alpha
        return _softmax(w[0] * zs[0].astype(np.float64) + a * (w[1] * zs[1].astype(np.float64)
                                                                 - w[2] * zs[2].astype(np.float64)))
    raise ValueError(mode)


CASES = [
    ("mix", ("a", "b"), [0.7, 0.3], {}),
    ("mix", ("a", "b", "c"), [2.0, 1.0, 1.0], {}),
    ("product", ("a", "b"), [0.6, 0.9], {}),
    ("contrast", ("a", "b"), [1.0, 0.5], {"alpha": 0.05, "amateur_temperature": 1.5}),
    ("proxy", ("a", "b", "c"), [1.0, 1.0, 1.0], {"alpha": 0.8}),
]


@pytest.mark.parametrize("mode,names,weights,extra", CASES, ids=[f"{c[0]}-{len(c[1])}" for c in CASES])
def test_combined_distribution_matches_numpy(ms, mode, names, weights, extra) -> None:
    mods = [ms[n] for n in names]
    w = loomrt.weave(mods, weights=weights, mode=mode, **extra)
    prompt_ids = mods[0].encode(PROMPT)
    steps = list(w.iter_steps(PROMPT, 6, temperature=0.9, seed=5))
    assert len(steps) == 6
    toks = []
    for k, (row, logits) in enumerate(steps):
        ctx = prompt_ids + toks
        zs = [_own_logits(m, ctx) for m in mods]
        ref = _reference(mode, zs, weights, extra.get("alpha"), extra.get("amateur_temperature", 1.0))
        got = _softmax(logits)  # the distribution the sampler saw at temperature 1
        assert np.max(np.abs(got - ref)) < PROB_TOL, (mode, k, np.max(np.abs(got - ref)))
        t = row["token"]
        assert abs(row["combined"] - ref[t]) < PROB_TOL
        # each model's own probability and rank of the token
        for i, z in enumerate(zs):
            zi = z.astype(np.float64) / (extra.get("amateur_temperature", 1.0) if mode == "contrast" and i == 1 else 1.0)
            p = _softmax(zi)
            assert abs(row["probs"][i] - p[t]) < PROB_TOL
            lo = 1 + int(np.sum(p > p[t] + 1e-6))  # rank up to near-ties of float32 rounding
            hi = lo + int(np.sum(np.abs(p - p[t]) <= 1e-6)) - 1
            assert lo <= row["ranks"][i] <= hi, (row["ranks"][i], lo, hi)
            assert [x[0] for x in row["top"][i]][:1] == [int(np.argmax(p))]
        # shares
        wts = np.asarray(row["weights"])
        if mode == "mix":
            assert abs(sum(row["shares"]) - 1.0) < 1e-12
            terms = np.array([wts[i] * _softmax(z)[t] for i, z in enumerate(zs)])
            assert np.allclose(row["shares"], terms / terms.sum(), atol=1e-5)
        elif mode == "product":
            assert np.allclose(row["shares"], [wts[i] * _log_softmax(z)[t] for i, z in enumerate(zs)], atol=1e-4)
        elif mode == "contrast":
            tau = extra["amateur_temperature"]
            want = [wts[0] * _log_softmax(zs[0])[t], -wts[1] * _log_softmax(zs[1].astype(np.float64) / tau)[t]]
            assert np.allclose(row["shares"], want, atol=1e-4)
        else:
            a = extra["alpha"]
            want = [wts[0] * zs[0][t], a * wts[1] * zs[1][t], -a * wts[2] * zs[2][t]]
            assert np.allclose(row["shares"], want, atol=1e-4)
        toks.append(t)


@pytest.mark.parametrize("mode,weights,which", [("mix", [1.0, 0.0], 0), ("mix", [0.0, 2.0], 1),
                                                ("product", [1.0, 0.0], 0), ("product", [0.0, 1.0], 1)])
def test_weight_one_is_the_model_alone(ms, mode, weights, which) -> None:
    mods = [ms["a"], ms["b"]]
    w = loomrt.weave(mods, weights=weights, mode=mode)
    sampling = dict(temperature=0.8, top_k=40, top_p=0.95, seed=9)
    g = w.generate(PROMPT, 24, **sampling)
    alone = mods[which].generate(PROMPT, 24, **sampling)
    assert g.token_ids == alone.token_ids
    assert g.text == alone.text
    # the combined logits are the model's own logits, bit for bit
    ids = mods[which].encode(PROMPT)
    for k, (row, logits) in enumerate(w.iter_steps(PROMPT, 5, **sampling)):
        own = _own_logits(mods[which], ids + g.token_ids[:k])
        assert own.tobytes() == logits.tobytes()


def _digests(w, **kw):
    g = w.generate(PROMPT, 16, receipt=True, temperature=0.7, seed=4, **kw)
    return g.token_ids, g.receipt["step_logits_sha256"]


def test_bit_identical_across_threads_and_kernel_paths(paths) -> None:
    runs = []
    for threads in (1, 2, 3):
        mods = [loomrt.load(paths[k], threads=threads) for k in ("a", "b", "c")]
        for mode, wts in (("mix", [0.5, 0.3, 0.2]), ("product", [0.5, 0.3, 0.2]), ("proxy", [1, 1, 1])):
            for par in (False, True):  # models one after another, or stepped at once on threads
                w = loomrt.weave(mods, weights=wts, mode=mode, parallel=par)
                assert w.parallel == par and w._info(loomrt._lib.lib.LRT_WEAVE_INFO_PARALLEL) == (
                    min(threads, 3) if par and threads > 1 else 0)
                runs.append((((threads, par), mode), _digests(w)))
    # two models on two threads: each session on its own thread by default
    two = [loomrt.load(paths[k], threads=2) for k in ("a", "b")]
    w = loomrt.weave(two, weights=[0.5, 0.3], mode="mix")
    assert w.parallel and w.session_threads == [1, 1]
    seq = loomrt.weave(two, weights=[0.5, 0.3], mode="mix", parallel=False)
    assert _digests(w) == _digests(seq)
    assert _digests(loomrt.weave(two, weights=[0.5, 0.3], mode="mix", threads=4)) == _digests(seq)
    base = loomrt.kernel_path()
    try:
        for path in loomrt.kernel_paths():
            loomrt.set_kernel_path(path)
            mods = [loomrt.load(paths[k], threads=2) for k in ("a", "b", "c")]
            runs.append(((path, "mix"), _digests(loomrt.weave(mods, weights=[0.5, 0.3, 0.2], mode="mix"))))
    finally:
        loomrt.set_kernel_path(base)
    by_mode = {}
    for (cfg, mode), res in runs:
        by_mode.setdefault(mode, set()).add((tuple(res[0]), tuple(res[1])))
    for mode, results in by_mode.items():
        assert len(results) == 1, f"{mode}: woven output differs across threads / kernel paths"


def test_schedules_rules_and_callbacks_set_the_weights(ms) -> None:
    mods = [ms["a"], ms["b"]]
    rows = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    g = loomrt.weave(mods, mode="product", schedule=rows).generate(PROMPT, 5)
    assert [r["weights"] for r in g.trace.rows] == rows + [rows[-1]] * 2
    ramp = [(0, [1.0, 0.0]), (4, [0.0, 1.0])]
    g = loomrt.weave(mods, mode="product", ramp=ramp).generate(PROMPT, 6)
    want = [[1 - min(k, 4) / 4, min(k, 4) / 4] for k in range(6)]
    assert np.allclose([r["weights"] for r in g.trace.rows], want, atol=1e-15)
    # a mix schedule is normalised
    g = loomrt.weave(mods, mode="mix", schedule=[[3.0, 1.0]]).generate(PROMPT, 2)
    assert g.trace.rows[0]["weights"] == [0.75, 0.25]
    # callback: called before each step with the step number
    seen = []

    def cb(step, wv):
        seen.append(step)
        return [1.0, float(step)]

    g = loomrt.weave(mods, weights=cb, mode="product").generate(PROMPT, 4)
    assert seen[:4] == [0, 1, 2, 3]
    assert [r["weights"] for r in g.trace.rows] == [[1.0, float(k)] for k in range(4)]
    # confidence: w_i c_i rescaled to keep the total, c_i = the model's top probability
    w = loomrt.weave(mods, weights=[1.0, 1.0], mode="product", rule="confidence")
    ids = mods[0].encode(PROMPT)
    toks = []
    for row, _ in w.iter_steps(PROMPT, 3):
        c = np.array([_softmax(_own_logits(m, ids + toks)).max() for m in mods])
        assert np.allclose(row["weights"], c * 2.0 / c.sum(), rtol=1e-6)
        toks.append(row["token"])


def test_route_rule_switches_inside_code_fences(ms) -> None:
    mods = [ms["a"], ms["b"]]
    route = {"prose": [1.0, 0.0], "code": [0.0, 1.0]}
    for prompt, inside in (("Some prose. ```", True), ("```x``` prose", False), ("a ````", True)):
        g = loomrt.weave(mods, mode="mix", rule="route", route=route).generate(prompt, 1)
        assert g.trace.rows[0]["weights"] == (route["code"] if inside else route["prose"]), prompt
    # the state follows the generated tokens: a fence token flips it for the next step
    w = loomrt.weave(mods, mode="mix", rule="route", route=route)
    rows = [r for r, _ in w.iter_steps("x", 40, temperature=1.5, seed=2)]
    state = False
    run = 0
    for r in rows:
        assert r["weights"] == (route["code"] if state else route["prose"])
        for ch in r["token_text"]:
            run = run + 1 if ch == "`" else 0
            if run == 3:
                state = not state


def test_vocabulary_check(ms) -> None:
    with pytest.raises(loomrt.InvalidArgumentError, match=r"token id 260 is .* in model 0 but .* in model 1"):
        loomrt.weave([ms["a"], ms["other"]])
    w = loomrt.weave([ms["a"], ms["padded"]], weights=[0.5, 0.5])
    assert w.vocab_size == models.VOCAB and w.shared_vocab_size == models.VOCAB
    g = w.generate(PROMPT, 8, temperature=1.0, seed=1)
    assert all(t < models.VOCAB for t in g.token_ids)
    assert len(w.combined_logits()) == models.VOCAB


def test_bad_input_is_refused(ms) -> None:
    a, b, c = ms["a"], ms["b"], ms["c"]
    for bad, msg in (([-1.0, 1.0], "negative"), ([float("nan"), 1.0], "NaN"), ([0.0, 0.0], "all weights are 0"),
                     ([1.0], "one weight per model"), ([float("inf"), 1.0], "not finite")):
        with pytest.raises(loomrt.InvalidArgumentError, match=msg):
            loomrt.weave([a, b], weights=bad)
    with pytest.raises(loomrt.NotFoundError, match="unknown weave rule \"nope\"; the rules are none, confidence, route"):
        loomrt.weave([a, b], rule="nope")
    with pytest.raises(loomrt.InvalidArgumentError, match="contrast weaves 2 models"):
        loomrt.weave([a, b, c], mode="contrast")
    with pytest.raises(loomrt.InvalidArgumentError, match="proxy weaves 3 models"):
        loomrt.weave([a, b], mode="proxy")
    with pytest.raises(loomrt.InvalidArgumentError, match="unknown weave mode"):
        loomrt.weave([a, b], mode="blend")
    with pytest.raises(loomrt.InvalidArgumentError, match="schedule row 1: weight 0 is negative"):
        loomrt.weave([a, b], schedule=[[1, 0], [-1, 1]])
    with pytest.raises(loomrt.InvalidArgumentError, match="steps must increase"):
        loomrt.weave([a, b], ramp=[(3, [1, 0]), (1, [0, 1])])
    with pytest.raises(loomrt.InvalidArgumentError, match="weights callback.s result at step 0: .*negative"):
        loomrt.weave([a, b], weights=lambda s, w: [1.0, -2.0]).generate(PROMPT, 2)
    w = loomrt.weave([a, b])
    with pytest.raises(loomrt.StateError, match="no woven step"):
        w.combined_logits()
    # a session changed behind the weave's back ends the generation with a clear error
    it = w.iter_steps(PROMPT, 10)
    next(it)
    w.sessions[1].reset()
    with pytest.raises(loomrt.StateError, match="tokens changed"):
        next(it)


def test_a_model_dropped_or_changed_mid_generation(paths) -> None:
    """One model "closed" mid-generation: the weave keeps its models and sessions alive (the
    generation goes on, equal to an undisturbed one); a session reset, truncated or used by
    another thread gives a typed error, never a crash, and the next prompt starts cleanly."""
    import gc
    import threading

    a, b = loomrt.load(paths["a"], threads=1), loomrt.load(paths["b"], threads=1)
    want = loomrt.weave([a, b], weights=[0.5, 0.5]).generate(PROMPT, 12, temperature=0.9, seed=3).token_ids
    w = loomrt.weave([a, loomrt.load(paths["b"], threads=1)], weights=[0.5, 0.5])
    it = w.iter_steps(PROMPT, 12, temperature=0.9, seed=3)
    got = [next(it)[0]["token"] for _ in range(4)]
    w.models[1] = None  # the caller's last reference to model 1 is gone
    gc.collect()
    got += [r["token"] for r, _ in it]
    assert got == want
    # a session truncated mid-generation
    w = loomrt.weave([a, b], weights=[0.5, 0.5])
    it = w.iter_steps(PROMPT, 10)
    next(it)
    w.sessions[0].truncate(2)
    with pytest.raises(loomrt.StateError, match="tokens changed since the last step"):
        next(it)
    assert len(w.generate(PROMPT, 3).token_ids) == 3  # a new prompt works again
    # another thread evaluating on a woven session while the weave steps: BusyError or
    # StateError on either side, no crash, no mixed result
    w = loomrt.weave([a, b], weights=[0.5, 0.5])
    errs, stop = [], threading.Event()

    def other() -> None:
        while not stop.is_set():
            try:
                w.sessions[1].reset()
                w.sessions[1].eval([5, 6])
            except loomrt.BusyError as exc:
                errs.append(exc)

    th = threading.Thread(target=other)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    th.start()
    caught = []
    try:
        for _ in range(40):
            try:
                w.generate(PROMPT, 24)
            except (loomrt.BusyError, loomrt.StateError) as exc:
                caught.append(exc)
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    assert caught, "the weave never noticed the other thread"
    assert all(isinstance(e, (loomrt.BusyError, loomrt.StateError)) for e in caught + errs)


class _Spans(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = []
        self.stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "tok" in (a.get("class") or "").split():
            self.tokens.append(int(a["data-token"]))


def test_trace_outputs(ms, tmp_path) -> None:
    w = loomrt.weave([ms["a"], ms["b"]], weights=[0.6, 0.4])
    g = w.generate(PROMPT, 20, temperature=1.0, seed=3)
    page = g.trace.to_html(tmp_path / "t.html")
    p = _Spans()
    p.feed(page)
    p.close()
    assert p.tokens == g.token_ids
    data = page.split('<script type="application/json" id="trace-data">')[1].split("</script>")[0]
    rows = json.loads(data)["rows"]
    assert [r["token"] for r in rows] == g.token_ids
    lines = g.trace.to_jsonl(tmp_path / "t.jsonl").splitlines()
    assert json.loads(lines[0])["models"] == w.names and len(lines) == 1 + len(g.token_ids)
    assert [json.loads(x)["token"] for x in lines[1:]] == g.token_ids
    ansi = g.trace.to_ansi()
    assert "\x1b[" in ansi and w.names[0] in ansi
    assert "".join(r["text"] for r in g.trace.rows) == g.text


def test_html_trace_renders_in_chromium(ms, tmp_path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (tests/install-deps.sh installs it)")
    g = loomrt.weave([ms["a"], ms["b"]], weights=[0.6, 0.4]).generate(PROMPT, 12, temperature=1.0, seed=3)
    page = tmp_path / "trace.html"
    g.trace.to_html(page)
    shot = tmp_path / "trace.png"
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "prof"),
            "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert f'data-ready="{len(g.token_ids)}"' in dom.stdout, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr
    subprocess.run(base + ["--screenshot=" + str(shot), "--window-size=1000,700", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 1000
    art = os.environ.get("LOOMRT_TEST_ARTIFACTS")
    if art:
        os.makedirs(art, exist_ok=True)
        shutil.copy(shot, os.path.join(art, "weave-trace.png"))


def test_receipts_replay(ms, paths, tmp_path) -> None:
    mods = [ms["a"], ms["b"]]
    w = loomrt.weave(mods, weights=[0.7, 0.3], mode="mix", rule="route",
                     route={"prose": [0.9, 0.1], "code": [0.1, 0.9]})
    g = w.generate(PROMPT, 10, temperature=0.9, seed=8, receipt=True)
    r = g.receipt
    assert r["format"] == "loomrt-weave-receipt" and [m["hash"] for m in r["models"]] == \
        [loomrt.model_hash(m).hash for m in mods]
    assert r["weave"]["mode"] == "mix" and r["weave"]["rule"] == "route"
    assert loomrt.verify_receipt(r, mods).ok
    assert verify_weave_receipt(r).ok  # models from the recorded paths
    bad = json.loads(json.dumps(r))
    bad["output_token_ids"][3] = (bad["output_token_ids"][3] + 1) % models.VOCAB
    res = loomrt.verify_receipt(bad, mods)
    assert not res.ok and res.first_difference == 3 and res.what == "token"
    res = loomrt.verify_receipt(r, [mods[1], mods[0]])
    assert not res.ok and res.what == "model"
    # callback weights are recorded per step and replayed
    g = loomrt.weave(mods, weights=lambda s, _: [1.0, 0.1 * s], mode="product").generate(
        PROMPT, 6, temperature=0.8, seed=2, receipt=True)
    assert loomrt.verify_receipt(g.receipt, mods).ok


def test_cli_weave_and_verify(paths, tmp_path) -> None:
    html_out, rec = tmp_path / "out.html", tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd = [sys.executable, "-m", "loomrt", "weave", paths["a"], paths["b"], "--weights", "0.7,0.3", "--mode", "mix",
           PROMPT, "-n", "8", "--temperature", "0.8", "--seed", "3", "--trace", str(html_out), "--receipt", str(rec),
           "-q"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert html_out.read_text(encoding="utf-8").count('class="tok"') == 8
    r = json.loads(rec.read_text(encoding="utf-8"))
    mods = [loomrt.load(paths[k], threads=1) for k in ("a", "b")]
    g = loomrt.weave(mods, weights=[0.7, 0.3]).generate(PROMPT, 8, temperature=0.8, seed=3)
    assert r["output_token_ids"] == g.token_ids and p.stdout.rstrip("\n") == g.text
    v = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(rec)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert v.returncode == 0 and v.stdout.startswith("OK:"), v.stdout + v.stderr
    bad = subprocess.run(cmd[:6] + ["--weights", "1,-1", PROMPT], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "negative" in bad.stderr


def test_steps_are_seeded_like_sessions(ms) -> None:
    """The sampler's draw depends on (seed, position) only: the same seed gives the same woven
    tokens, another seed other tokens."""
    w = loomrt.weave([ms["a"], ms["b"]], weights=[0.5, 0.5])
    a1 = w.generate(PROMPT, 12, temperature=1.0, seed=1).token_ids
    a2 = w.generate(PROMPT, 12, temperature=1.0, seed=1).token_ids
    b = w.generate(PROMPT, 12, temperature=1.0, seed=2).token_ids
    assert a1 == a2 and a1 != b
