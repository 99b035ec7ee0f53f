"""Decode speed of loomrt.wasm under Node against native loomrt, one thread, same model (issue 15
target: wasm >= 50% of native single-thread decode).

Decodes the same greedy continuation natively (Model.stream_tokens, threads=1, on the best
kernel path and on the scalar reference) and with bindings/js/loomrt.mjs under Node (the
wasm_simd128 path), interleaved over several rounds; reports the best decode tokens/s of each
(tokens after the first, over the time after the first: the prompt is not counted) and checks
that all give the same token ids.

    python benchmarks/web_speed.py [MODEL] [--tokens 64] [--rounds 3] [--wasm FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import loomrt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "Once upon a time, in a small village by the sea, there lived"

NODE_BENCH = r"""
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
const [mod, wasm, model, prompt, n, rounds] = process.argv.slice(2);
const { load } = await import(pathToFileURL(mod).href);
const m = await load(await readFile(model), { wasm });
const out = [];
for (let r = 0; r < Number(rounds); r++) {
  const ids = []; let tFirst = 0;
  for (const s of m.steps(prompt, { maxTokens: Number(n) })) {
    if (s.token < 0) continue;
    ids.push(s.token);
    if (ids.length === 1) tFirst = performance.now();
  }
  out.push({ ids, tps: (ids.length - 1) / ((performance.now() - tFirst) / 1000) });
}
console.log(JSON.stringify(out));
"""


def native(path: str, n: int, kernels: str) -> dict:
    assert loomrt.kernel_path() == kernels, (loomrt.kernel_path(), kernels)  # LOOMRT_KERNELS took effect
    m = loomrt.load(path, threads=1)
    ids, t_first = [], 0.0
    for t in m.stream_tokens(PROMPT, n):
        ids.append(t)
        if len(ids) == 1:
            t_first = time.perf_counter()
    return {"ids": ids, "tps": (len(ids) - 1) / (time.perf_counter() - t_first)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wasm", default=None, help="loomrt.wasm (default: build it with tools/build_wasm.py)")
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

        wasm = build_wasm.build(os.path.join(tmp, "loomrt.wasm"))
    script = os.path.join(tmp, "bench.mjs")
    with open(script, "w", encoding="utf-8") as f:
        f.write(NODE_BENCH)
    best = {"native best path": 0.0, "native reference": 0.0, "wasm (node)": 0.0}
    ids_seen = {}
    paths = loomrt.kernel_paths()
    for _ in range(args.rounds):
        for name, kern in (("native best path", paths[0]), ("native reference", "reference")):
            os.environ["LOOMRT_KERNELS"] = kern
            r = subprocess.run([sys.executable, "-c", f"import sys, json; sys.path.insert(0, {ROOT!r}); "
                                f"sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r}); import web_speed; "
                                f"print(json.dumps(web_speed.native({path!r}, {args.tokens}, {kern!r})))"],
                               capture_output=True, text=True, check=True, env=dict(os.environ, LOOMRT_KERNELS=kern))
            res = json.loads(r.stdout)
            best[name] = max(best[name], res["tps"])
            ids_seen[name] = res["ids"]
        r = subprocess.run([node, script, os.path.join(ROOT, "bindings", "js", "loomrt.mjs"), wasm, path, PROMPT,
                            str(args.tokens), "1"], capture_output=True, text=True, check=True)
        res = json.loads(r.stdout)[0]
        best["wasm (node)"] = max(best["wasm (node)"], res["tps"])
        ids_seen["wasm (node)"] = res["ids"]
    same = len({json.dumps(v) for v in ids_seen.values()}) == 1
    print(f"model {os.path.basename(path)}, {args.tokens} greedy tokens, 1 thread, best of {args.rounds}; "
          f"same token ids: {same}")
    print(f"  native {paths[0]:<14} {best['native best path']:7.1f} tok/s")
    print(f"  native reference      {best['native reference']:7.1f} tok/s")
    print(f"  wasm_simd128 (node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()})"
          f" {best['wasm (node)']:7.1f} tok/s = {100 * best['wasm (node)'] / best['native best path']:.0f}% of native")
    shutil.rmtree(tmp, ignore_errors=True)
    if not same:
        raise SystemExit("token ids differ: " + json.dumps(ids_seen))


if __name__ == "__main__":
    main()
