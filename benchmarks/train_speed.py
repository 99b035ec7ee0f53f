"""Training speed: loomrt's C trainer against PyTorch eager, side by side in one run.

The same Llama-style model (default: dim 256, 6 layers, 8 heads / 4 kv heads, SwiGLU FFN 704,
byte vocabulary 257, context 256, batch 8: about 4.9M parameters without the embedding ... see
the printed count), float32, AdamW, the same thread count, the same random batches. Reports
tokens/s (forward + backward + optimizer step) and the peak resident memory each adds to the
process (measured in a fresh subprocess per system so one does not hide the other).

    python benchmarks/train_speed.py                 # threads 1 and 2, 4 timed steps each
    python benchmarks/train_speed.py --threads 2 --steps 8 --dim 128 --layers 4

Speeds on a shared machine move with the host's load: compare the two columns of one run.
Each row also gives the 1-minute load average at its start and the ratio of CPU-time rates
(tokens per second of process CPU time, all threads together), which a busy host distorts
less than wall-clock rates. --repeat N measures N rounds (each system alternately).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(a):
    sys.path.insert(0, ROOT)
    from loomrt.train import model_config
    return model_config("llama", vocab=a.vocab, dim=a.dim, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads,
                        context=a.context, tied=True)


def batches(a, n):
    import numpy as np
    rng = np.random.default_rng(0)
    return [rng.integers(0, a.vocab, size=(a.batch, a.context + 1), dtype=np.int32) for _ in range(n)]


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_loomrt(a):
    sys.path.insert(0, ROOT)
    from loomrt.trainer import Trainer
    base = rss_mib()
    tr = Trainer(config(a), seed=0, threads=a.threads)
    tr.set(lr=1e-3, weight_decay=0.1, clip=1.0)
    data = batches(a, a.steps + 1)
    tr.train_step(data[0])  # warm-up (allocates the activations)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in data[1:]:
        tr.train_step(b)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    n = a.steps * a.batch * a.context
    return {"tokens_per_s": n / dt, "cpu_tokens_per_s": n / dc, "peak_mib": rss_mib() - base, "params": tr.n_params,
            "loss": tr.loss}


def run_torch(a):
    import torch
    import transformers
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = rss_mib()
    cfg = config(a)
    hc = transformers.LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    hc._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(hc).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    data = [torch.tensor(b.astype("int64")) for b in batches(a, a.steps + 1)]

    def step(b):
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=b[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step(data[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for b in data[1:]:
        loss = step(b)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    n = a.steps * a.batch * a.context
    return {"tokens_per_s": n / dt, "cpu_tokens_per_s": n / dc, "peak_mib": rss_mib() - base,
            "params": sum(p.numel() for p in model.parameters()), "loss": loss}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=4, help="timed steps per system (after one warm-up step)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=257)
    p.add_argument("--repeat", type=int, default=1, help="rounds per thread count")
    p.add_argument("--child", choices=["loomrt", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        a.threads = a.threads[0]
        print(json.dumps(run_loomrt(a) if a.child == "loomrt" else run_torch(a)))
        return 0
    print(f"Llama-style dim {a.dim}, {a.layers} layers, {a.heads}/{a.kv_heads} heads, context {a.context}, "
          f"batch {a.batch}, vocab {a.vocab}; {a.steps} timed steps (forward + backward + AdamW)")
    print(f"{'threads':>7} {'load':>5} | {'loomrt tok/s':>12} {'MiB':>7} | {'torch tok/s':>11} {'MiB':>7} | "
          f"{'ratio':>5} {'cpu ratio':>9}")
    base = [sys.executable, os.path.abspath(__file__), "--steps", str(a.steps), "--dim", str(a.dim), "--layers",
            str(a.layers), "--heads", str(a.heads), "--kv-heads", str(a.kv_heads), "--context", str(a.context),
            "--batch", str(a.batch), "--vocab", str(a.vocab)]
    for t in a.threads:
        for _ in range(a.repeat):
            load = os.getloadavg()[0]
            res = {}
            for who in ("loomrt", "torch"):
                env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
                out = subprocess.run(base + ["--threads", str(t), "--child", who], capture_output=True, text=True,
                                     env=env)
                if out.returncode:
                    print(out.stderr, file=sys.stderr)
                    return 1
                res[who] = json.loads(out.stdout.strip().splitlines()[-1])
            lo, to = res["loomrt"], res["torch"]
            print(f"{t:>7} {load:>5.1f} | {lo['tokens_per_s']:>12,.0f} {lo['peak_mib']:>7.0f} | "
                  f"{to['tokens_per_s']:>11,.0f} {to['peak_mib']:>7.0f} | {lo['tokens_per_s'] / to['tokens_per_s']:>5.2f} "
                  f"{lo['cpu_tokens_per_s'] / to['cpu_tokens_per_s']:>9.2f}", flush=True)
    print(f"parameters: loomrt {lo['params']:,}, torch {to['params']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
