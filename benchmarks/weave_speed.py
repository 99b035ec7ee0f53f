"""Cost of weaving (issue 18 target: weaving N models costs at most the sum of their single
decode times + 5%).

Decode time per token, prompt excluded: each generation runs twice, for 1 token and for N
tokens, and (t_N - t_1) / (N - 1) is the decode time; every run must give N tokens (a chat
prompt, so the instruct model does not stop at once). Measured for each model alone
(Model.generate) and for the models woven (mix, product; sequential and, where threads allow,
parallel), interleaved over several rounds; the best of the rounds is reported, with the
woven time over the sum of the single times. The same file loaded twice stands in for two
models (same size, same vocabulary: SmolLM2-135M, 49152 ids). Load averages are printed: on
a shared machine compare only numbers from one run.

    python benchmarks/weave_speed.py [MODEL] [--tokens 48] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import time

import loomrt

PROMPT = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="mix,product")
    args = ap.parse_args()
    path = args.model or loomrt.default_model_path()
    T, n = args.threads, args.tokens
    a = loomrt.load(path, threads=T)
    b = loomrt.load(path, threads=T)
    best = {}

    def decode_time(fn):
        t0 = time.perf_counter()
        one = fn(1)
        t1 = time.perf_counter()
        many = fn(n)
        t2 = time.perf_counter()
        if len(one) != 1 or len(many) != n:
            raise SystemExit(f"a run stopped early ({len(one)}, {len(many)} tokens): pick another prompt")
        return ((t2 - t1) - (t1 - t0)) / (n - 1)

    def timed(name, fn):
        best[name] = min(best.get(name, 1e9), decode_time(fn))

    weaves = {}
    for mode in args.modes.split(","):
        weaves[f"woven {mode}"] = loomrt.weave([a, b], weights=[0.6, 0.4], mode=mode, threads=T, parallel=False)
        if T >= 2:
            weaves[f"woven {mode} par"] = loomrt.weave([a, b], weights=[0.6, 0.4], mode=mode, threads=T,
                                                       parallel=True)
    load0 = os.getloadavg()
    for _ in range(args.rounds):
        timed("A alone", lambda k: a.generate(PROMPT, k, chat=True).token_ids)
        timed("B alone", lambda k: b.generate(PROMPT, k, chat=True).token_ids)
        for name, w in weaves.items():
            timed(name, lambda k, w=w: w.generate(PROMPT, k, chat=True).token_ids)
    load1 = os.getloadavg()
    single = best["A alone"] + best["B alone"]
    print(f"model {os.path.basename(path)}, {T} threads, {n} tokens, decode only, best of {args.rounds}; "
          f"load average {load0[0]:.2f} -> {load1[0]:.2f}")
    for k, v in best.items():
        extra = f"  ({v / single * 100:.1f}% of A + B)" if k.startswith("woven") else ""
        print(f"  {k:20s} {v * 1000:7.2f} ms/token{extra}")


if __name__ == "__main__":
    main()
