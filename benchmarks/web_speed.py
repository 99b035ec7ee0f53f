"""Decode speed of loomrt.wasm under Node and in headless Chromium against native loomrt, one
thread, same model (issue 15 target: wasm >= 50% of native single-thread decode).

Decodes the same greedy continuation natively (Model.stream_tokens, threads=1, on the best
kernel path and on the scalar reference) and with bindings/js/loomrt.mjs under Node and in
headless Chromium (the wasm_simd128 path; Chromium only when installed), interleaved over several rounds; reports the best decode tokens/s of each
(tokens after the first, over the time after the first: the prompt is not counted) and the
median tokens per CPU-second (the process's CPU time over the same tokens; for Chromium, its
renderer process's, all threads and the main thread alone, read from /proc: on a loaded host wall-clock ratios move with the load,
CPU-second ratios much less), and checks that all give the same token ids.

    python benchmarks/web_speed.py [MODEL] [--tokens 64] [--rounds 3] [--wasm FILE] [--threads N]

WEB_SPEED_CHROME_FLAGS (environment) adds Chromium flags, e.g. --js-flags=--no-liftoff.

--threads N adds native loomrt on N threads and loomrt-threads.wasm under Node on N threads
(Node worker threads over a shared memory; the same token ids are checked).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import loomrt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "Once upon a time, in a small village by the sea, there lived"

NODE_BENCH = r"""
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
const [mod, wasm, model, prompt, n, rounds, threads, threadsWasm] = process.argv.slice(2);
const { load } = await import(pathToFileURL(mod).href);
const m = await load(await readFile(model), { wasm, threads: Number(threads ?? 1), threadsWasm });
if (m.threads !== Number(threads ?? 1)) throw new Error(`threads: ${m.threadsFallback}`);
const out = [];
for (let r = 0; r < Number(rounds); r++) {
  const ids = []; let tFirst = 0, c0;
  for (const s of m.steps(prompt, { maxTokens: Number(n) })) {
    if (s.token < 0) continue;
    ids.push(s.token);
    if (ids.length === 1) { tFirst = performance.now(); c0 = process.cpuUsage(); }
  }
  const c = process.cpuUsage(c0);
  out.push({ ids, tps: (ids.length - 1) / ((performance.now() - tFirst) / 1000),
             cpu_tps: (ids.length - 1) / ((c.user + c.system) / 1e6) });
}
console.log(JSON.stringify(out));
"""

BENCH_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { load } from "./loomrt.mjs";
const q = new URLSearchParams(location.search);
let out;
try {
  const m = await load(new Uint8Array(await (await fetch("model.gguf")).arrayBuffer()));
  const ids = []; let tFirst = 0;
  for (const s of m.steps(q.get("prompt"), { maxTokens: Number(q.get("n")) })) {
    if (s.token < 0) continue;
    ids.push(s.token);
    if (ids.length === 1) { await fetch("/mark", { method: "POST" }); tFirst = performance.now(); }
  }
  out = { ids, tps: (ids.length - 1) / ((performance.now() - tFirst) / 1000), ua: navigator.userAgent };
} catch (e) { out = { error: String(e && e.stack || e) }; }
await fetch("/result", { method: "POST", body: JSON.stringify(out) });
</script>"""


def renderer_cpu_seconds(pid: int) -> tuple:
    """User + system CPU seconds of the renderer processes (--type=renderer) under browser
    process pid, all their threads and their main threads only (Linux /proc; zeros elsewhere):
    the page, and so the wasm decode, runs on a renderer's main thread; its other threads
    compile (V8 tiers hot wasm functions up in the background), collect garbage, composite."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(path: str) -> list:
        with open(path, encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()

    procs = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if d.isdigit():
            try:
                st = stat(f"/proc/{d}/stat")
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    renderer = b"--type=renderer" in f.read()
                main = stat(f"/proc/{d}/task/{d}/stat") if renderer else st
            except OSError:
                continue
            procs[int(d)] = (int(st[1]), (int(st[11]) + int(st[12])) / tick, (int(main[11]) + int(main[12])) / tick,
                             renderer)
    tree, grew = {pid}, True
    while grew:
        add = {p for p, v in procs.items() if v[0] in tree and p not in tree}
        tree |= add
        grew = bool(add)
    mine = [procs[p] for p in tree if p in procs and procs[p][3]]
    return sum(v[1] for v in mine), sum(v[2] for v in mine)


def chromium(chrome: str, wasm: str, path: str, n: int, tmp: str) -> dict:
    """One decode in headless Chromium (real clock: no virtual time); the page POSTs its result.
    After the first token the page POSTs /mark; the CPU time of Chromium's renderer process (all
    threads, and its main thread alone) is read there and at the result: tokens per CPU-second."""
    import urllib.parse

    site = os.path.join(tmp, "site")
    if not os.path.isdir(site):
        os.makedirs(site)
        shutil.copy(os.path.join(ROOT, "bindings", "js", "loomrt.mjs"), site)
        shutil.copy(wasm, os.path.join(site, "loomrt.wasm"))
        os.symlink(os.path.abspath(path), os.path.join(site, "model.gguf"))
        with open(os.path.join(site, "bench.html"), "w", encoding="utf-8") as f:
            f.write(BENCH_PAGE)
    got: dict = {}
    cpu: dict = {}
    done = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript"}

        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/mark":
                cpu["start"] = renderer_cpu_seconds(proc.pid)
            else:
                cpu["end"] = renderer_cpu_seconds(proc.pid)
                got.update(json.loads(body))
            self.send_response(204)
            self.end_headers()
            if self.path != "/mark":
                done.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=site))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    url = (f"http://127.0.0.1:{server.server_address[1]}/bench.html?"
           + urllib.parse.urlencode({"prompt": PROMPT, "n": n}))
    proc = subprocess.Popen([chrome, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", *os.environ.get("WEB_SPEED_CHROME_FLAGS", "").split(),
                             f"--user-data-dir={os.path.join(tmp, 'profile')}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ok = done.wait(600)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.shutdown()
        server.server_close()
    if not ok or "error" in got:
        raise SystemExit(f"chromium run failed: {got.get('error', 'no result')}")
    (a0, m0), (a1, m1) = cpu.get("start", (0.0, 0.0)), cpu.get("end", (0.0, 0.0))
    got["cpu_tps"] = (len(got["ids"]) - 1) / (a1 - a0) if a1 > a0 else 0.0
    got["main_cpu_tps"] = (len(got["ids"]) - 1) / (m1 - m0) if m1 > m0 else 0.0
    return got


def native(path: str, n: int, kernels: str, threads: int = 1) -> dict:
    assert loomrt.kernel_path() == kernels, (loomrt.kernel_path(), kernels)  # LOOMRT_KERNELS took effect
    m = loomrt.load(path, threads=threads)
    ids, t_first, c_first = [], 0.0, 0.0
    for t in m.stream_tokens(PROMPT, n):
        ids.append(t)
        if len(ids) == 1:
            t_first, c_first = time.perf_counter(), time.process_time()
    return {"ids": ids, "tps": (len(ids) - 1) / (time.perf_counter() - t_first),
            "cpu_tps": (len(ids) - 1) / (time.process_time() - c_first)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wasm", default=None, help="loomrt.wasm, loomrt-threads.wasm beside it (default: build both "
                    "with tools/build_wasm.py)")
    ap.add_argument("--threads", type=int, default=0, help="also N threads: native and wasm under Node (N >= 2)")
    args = ap.parse_args()
    path = args.model or loomrt.default_model_path()
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise SystemExit("node is not installed")
    tmp = tempfile.mkdtemp(prefix="loomrt-web-")
    wasm = args.wasm
    if wasm is None:
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        import build_wasm

        wasm = build_wasm.build_all(tmp)[0]
    threads_wasm = os.path.join(os.path.dirname(os.path.abspath(wasm)), "loomrt-threads.wasm")
    script = os.path.join(tmp, "bench.mjs")
    with open(script, "w", encoding="utf-8") as f:
        f.write(NODE_BENCH)
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    best = {"native best path": 0.0, "native reference": 0.0, "wasm (node)": 0.0}
    if chrome:
        best["wasm (chromium)"] = 0.0
    if args.threads > 1:
        best[f"native {args.threads} threads"] = best[f"wasm (node) {args.threads} threads"] = 0.0
    ids_seen = {}
    cpus: dict = {}  # name -> tokens per CPU-second of each round

    def note(name: str, res: dict) -> None:
        best[name] = max(best[name], res["tps"])
        cpus.setdefault(name, []).append(res["cpu_tps"])

    paths = loomrt.kernel_paths()
    for _ in range(args.rounds):
        for name, kern in (("native best path", paths[0]), ("native reference", "reference")):
            os.environ["LOOMRT_KERNELS"] = kern
            r = subprocess.run([sys.executable, "-c", f"import sys, json; sys.path.insert(0, {ROOT!r}); "
                                f"sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r}); import web_speed; "
                                f"print(json.dumps(web_speed.native({path!r}, {args.tokens}, {kern!r})))"],
                               capture_output=True, text=True, check=True, env=dict(os.environ, LOOMRT_KERNELS=kern))
            res = json.loads(r.stdout)
            note(name, res)
            ids_seen[name] = res["ids"]
        r = subprocess.run([node, script, os.path.join(ROOT, "bindings", "js", "loomrt.mjs"), wasm, path, PROMPT,
                            str(args.tokens), "1"], capture_output=True, text=True, check=True)
        res = json.loads(r.stdout)[0]
        note("wasm (node)", res)
        ids_seen["wasm (node)"] = res["ids"]
        if args.threads > 1:
            kern = paths[0]
            r = subprocess.run([sys.executable, "-c", f"import sys, json; sys.path.insert(0, {ROOT!r}); "
                                f"sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r}); import web_speed; "
                                f"print(json.dumps(web_speed.native({path!r}, {args.tokens}, {kern!r}, {args.threads})))"],
                               capture_output=True, text=True, check=True, env=dict(os.environ, LOOMRT_KERNELS=kern))
            res = json.loads(r.stdout)
            name = f"native {args.threads} threads"
            note(name, res)
            ids_seen[name] = res["ids"]
            r = subprocess.run([node, script, os.path.join(ROOT, "bindings", "js", "loomrt.mjs"), wasm, path, PROMPT,
                                str(args.tokens), "1", str(args.threads), threads_wasm],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout)[0]
            name = f"wasm (node) {args.threads} threads"
            note(name, res)
            ids_seen[name] = res["ids"]
        if chrome:
            res = chromium(chrome, wasm, path, args.tokens, tmp)
            note("wasm (chromium)", res)
            cpus.setdefault("wasm (chromium), main thread", []).append(res["main_cpu_tps"])
            ids_seen["wasm (chromium)"] = res["ids"]
            ua = re.search(r"Chrome/[0-9.]+", res["ua"])
    same = len({json.dumps(v) for v in ids_seen.values()}) == 1
    print(f"model {os.path.basename(path)}, {args.tokens} greedy tokens, 1 thread, best of {args.rounds}; "
          f"same token ids: {same}")
    print(f"  native {paths[0]:<14} {best['native best path']:7.1f} tok/s")
    print(f"  native reference      {best['native reference']:7.1f} tok/s")
    print(f"  wasm_simd128 (node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()})"
          f" {best['wasm (node)']:7.1f} tok/s = {100 * best['wasm (node)'] / best['native best path']:.0f}% of native")
    if chrome:
        print(f"  wasm_simd128 ({ua.group(0) if ua else 'chromium'}, headless) {best['wasm (chromium)']:7.1f} tok/s = "
              f"{100 * best['wasm (chromium)'] / best['native best path']:.0f}% of native")
    if args.threads > 1:
        n = args.threads
        print(f"  native {paths[0]:<14} {best[f'native {n} threads']:7.1f} tok/s on {n} threads")
        print(f"  wasm threads (node)   {best[f'wasm (node) {n} threads']:7.1f} tok/s on {n} threads = "
              f"{100 * best[f'wasm (node) {n} threads'] / best[f'native {n} threads']:.0f}% of native on {n}, "
              f"{100 * best[f'wasm (node) {n} threads'] / best['native best path']:.0f}% of native on 1")
    med = {k: statistics.median(v) for k, v in cpus.items() if v}
    nat = med.get("native best path", 0.0)
    print(f"tokens per CPU-second (median of {args.rounds}; robust to other load on the host), load average "
          f"{os.getloadavg()[0]:.1f}:")
    for k, v in med.items():
        print(f"  {k:<28} {v:7.1f}" + (f" = {100 * v / nat:.0f}% of native" if nat and k != "native best path" else ""))
    shutil.rmtree(tmp, ignore_errors=True)
    if not same:
        raise SystemExit("token ids differ: " + json.dumps(ids_seen))


if __name__ == "__main__":
    main()
