"""The int8 mode's kernel paths side by side, in one process: SmolLM2-135M at Q8_0 / Q4_0 /
Q4_1 opened with int8_activations=True, decode (one token per eval) and prefill (a 64-token
eval) timed on each runnable path (loomrt.set_kernel_path), the paths alternated over several
rounds, best round reported. With --threads 1 the time is the calling thread's CPU time
(time.thread_time), which a busy shared machine disturbs far less than wall time (it still
shares caches and memory bandwidth); with more threads, wall time. Every path gives the same logits (checked here too), so only the
time differs. Files as `loomrt bench --formats` makes them (~/.cache/loomrt/bench).

    python benchmarks/int8_paths.py [--threads 1] [--rounds 5] [--paths avx2-avx512vnni avx2-avx512vl]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's loomrt
import loomrt  # noqa: E402


def files():
    q41 = loomrt.default_model_path()
    stem = os.path.splitext(os.path.basename(q41))[0]
    cache = os.path.expanduser("~/.cache/loomrt/bench")
    out = {"q4_1": q41}
    for f in ("q8_0", "q4_0"):
        p = os.path.join(cache, f"{stem}.{f}.gguf")
        if os.path.exists(p):
            out[f] = p
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--decode", type=int, default=24)
    ap.add_argument("--paths", nargs="+", default=None)
    args = ap.parse_args()
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    paths = args.paths or [p for p in loomrt.kernel_paths() if p != "reference" and p != "avx512"]
    base = loomrt.kernel_path()
    prompt = list(range(100, 164))
    load0 = os.getloadavg()[0]
    for fmt, path in files().items():
        m = loomrt.load(path, threads=args.threads, int8_activations=True)
        best = {}
        ref = None
        try:
            for _ in range(args.rounds):
                for kp in paths:
                    loomrt.set_kernel_path(kp)
                    s = m.session(context=256, threads=args.threads)
                    t0 = clock()
                    lg = s.eval(prompt)
                    t1 = clock()
                    for k in range(args.decode):
                        lg = s.eval([200 + k])
                    t2 = clock()
                    if ref is None:
                        ref = lg.tobytes()
                    assert lg.tobytes() == ref, f"{kp} differs"
                    pf, dc = len(prompt) / (t1 - t0), args.decode / (t2 - t1)
                    b = best.setdefault(kp, [0.0, 0.0])
                    b[0], b[1] = max(b[0], dc), max(b[1], pf)
        finally:
            loomrt.set_kernel_path(base)
        line = "  ".join(f"{kp}: decode {v[0]:6.1f} prefill {v[1]:6.1f}" for kp, v in best.items())
        print(f"{fmt:5s} {args.threads} thr  {line}")
    print(f"tok/s ({'CPU' if args.threads == 1 else 'wall'} time), best of {args.rounds} rounds; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
