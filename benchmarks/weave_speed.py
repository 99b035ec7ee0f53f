"""Cost of weaving (issue 18 target: weaving N models costs at most the sum of their single
decode times + 5%).

Decodes the same greedy continuation with each model alone (Model.generate) and with the
models woven (mix, product), interleaved over several rounds; reports the best seconds per
token of each and the woven time over the sum of the single times. The same model file loaded
twice stands in for two models (same size, same vocabulary: SmolLM2-135M, 49152 ids).

    python benchmarks/weave_speed.py [MODEL] [--tokens 48] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import loomrt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    path = args.model or loomrt.default_model_path()
    a = loomrt.load(path, threads=args.threads)
    b = loomrt.load(path, threads=args.threads)
    prompt = "Write a short story about a robot who learns to paint."
    n = args.tokens
    best = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        got = fn()
        dt = (time.perf_counter() - t0) / max(len(got), 1)
        best[name] = min(best.get(name, 1e9), dt)

    weaves = {mode: loomrt.weave([a, b], weights=[0.6, 0.4], mode=mode) for mode in ("mix", "product")}
    for _ in range(args.rounds):
        timed("A alone", lambda: a.generate(prompt, n).token_ids)
        timed("B alone", lambda: b.generate(prompt, n).token_ids)
        for mode, w in weaves.items():
            timed(f"woven {mode}", lambda w=w: w.generate(prompt, n).token_ids)
    single = best["A alone"] + best["B alone"]
    print(f"model {path}, {args.threads} threads, {n} tokens, best of {args.rounds} (prompt included in the time)")
    for k, v in best.items():
        extra = f"  ({v / single * 100:.1f}% of A + B)" if k.startswith("woven") else ""
        print(f"  {k:14s} {v * 1000:7.2f} ms/token{extra}")


if __name__ == "__main__":
    main()
