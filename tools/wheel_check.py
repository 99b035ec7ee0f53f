#!/usr/bin/env python3
"""Print (as JSON) the numbers an installed loomrt must reproduce on any machine.

Run by tools/arm_wheel.py under an emulated aarch64 Python (against the cross-built wheel) and
under this machine's Python (against the in-place build); the two outputs must be equal except
for the ``info.*`` keys. Needs tests/models.py and tests/test_determinism.py (golden values)
from the repository next to this file, and the bindings/python ctypes module.

Keys:
* ``golden ...``: the seeded tiny llama of tests/test_determinism.py: its weights, the logits
  hash of SEQ40 and the 24 sampled ids, on every kernel path of this build, several thread
  counts and prompt chunkings (one value when all cells agree, else the list of distinct ones),
  and whether that value is the pinned GOLDEN one; the newer families' seeded models
  (tests/models.py FAMILY_GOLDEN) unless --quick.
* ``ctypes ...``: the same sampled ids through bindings/python/loomrt_ctypes.py and the
  package's libloomrt.so.
* ``model ...``: the real GGUF (--model): the prompt's logits hash, greedy and sampled ids.
* ``receipt ...``: --make-receipt writes a receipt of a sampled generation; --verify-receipt
  replays one (made on the other machine) here.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(1, os.path.join(ROOT, "bindings", "python"))

import numpy as np  # noqa: E402

import loomrt  # noqa: E402
import models  # noqa: E402
import test_determinism as td  # noqa: E402

PROMPT = "The capital of France is"


def one(values: list):
    """The common value of all cells, or the sorted distinct values when they disagree."""
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else distinct


def chunked(m, ids, chunk, threads):
    return td.chunked_logits(m, ids, chunk, threads=threads)


def golden(out: dict, tmp: str, quick: bool) -> str:
    t = models.seeded_llama_tensors(models.SEEDED_CONFIG)
    h = hashlib.sha256()
    for name in sorted(t):
        h.update(name.encode())
        h.update(t[name].astype("<f4").tobytes())
    out["golden weights sha256"] = h.hexdigest()
    folder = models.write_seeded_folder(os.path.join(tmp, "seeded"))
    m = loomrt.load(folder, threads=2)
    paths = loomrt.kernel_paths()
    threads = [1, 3] if quick else [1, 2, 3, 4]
    chunks = [0, 7] if quick else [0, 1, 7, 16]
    logits, ids = [], []
    before = loomrt.kernel_path()
    try:
        for p in paths:
            loomrt.set_kernel_path(p)
            for th in threads:
                for ch in chunks:
                    logits.append(models.logits_sha256(chunked(m, td.SEQ, ch or len(td.SEQ), th)))
                ids.append(models.tokens_sha256(td.sampled(m, td.SEQ, td.N_SAMPLED, threads=th, **td.SAMPLING)))
    finally:
        loomrt.set_kernel_path(before)
    out["info.kernel paths"] = paths
    out["info.golden cells"] = len(logits) + len(ids)
    out["golden logits sha256"] = one(logits)
    out["golden sampled ids sha256"] = one(ids)
    out["golden logits == pinned"] = out["golden logits sha256"] == td.GOLDEN_LOGITS_SHA256
    out["golden sampled ids == pinned"] = out["golden sampled ids sha256"] == td.GOLDEN_TOKENS_SHA256
    if not quick:
        for fam in models.FAMILIES:
            fm = loomrt.load(models.write_seeded_family_folder(os.path.join(tmp, fam), fam), threads=2)
            g = models.FAMILY_GOLDEN[fam]
            lg = models.logits_sha256(fm.logits(td.SEQ))
            tk = models.tokens_sha256(td.sampled(fm, td.SEQ, td.N_SAMPLED, **td.SAMPLING))
            out[f"golden {fam} == pinned"] = lg == g["logits"] and tk == g["sampled ids"]
    return folder


def ctypes_binding(out: dict, folder: str, model_path: str, n: int) -> None:
    import loomrt_ctypes as lc

    lib = lc.Library(loomrt.library_path())
    out["info.ctypes library"] = lib.path if hasattr(lib, "path") else loomrt.library_path()
    with lc.Model(lib, folder) as mdl:
        s = lc.Session(mdl, threads=2)
        s.configure(**td.SAMPLING)
        s.prompt_tokens(td.SEQ)
        ids = []
        for _ in range(td.N_SAMPLED):
            tok, _piece = s.step()
            ids.append(tok)
        s.close()
    out["ctypes golden sampled ids sha256"] = models.tokens_sha256(ids)
    if model_path:
        with lc.Model(lib, model_path) as mdl:
            s = lc.Session(mdl, threads=2)
            s.configure(temperature=0.0)
            got, text = s.generate(PROMPT, n)
            s.close()
        out["ctypes model greedy ids"] = got


def real_model(out: dict, path: str, n: int, receipt_in: str, receipt_out: str, quick: bool) -> None:
    m = loomrt.load(path, threads=2)
    ids = m.encode(PROMPT)
    out["model prompt ids"] = ids
    # the prompt's logits and the greedy continuation from one session (what stream_tokens does)
    s = m.session()
    s.configure(loomrt.SamplingParams(temperature=0.0))
    out["model prompt logits sha256"] = models.logits_sha256(s.eval(ids, all_logits=True))
    greedy = [s.sample()]
    while len(greedy) < n:
        s.eval([greedy[-1]])
        greedy.append(s.sample())
    out["model greedy ids"] = greedy
    if not quick:  # --quick: the receipt's generation below is the sampled one
        out["model sampled ids"] = list(m.stream_tokens(PROMPT, n, temperature=0.8, top_p=0.95, top_k=40, seed=7))
    if receipt_out:
        g = m.generate(PROMPT, max_tokens=n, temperature=0.8, top_p=0.95, top_k=40, seed=7, receipt=True)
        with open(receipt_out, "w", encoding="utf-8") as f:
            json.dump(g.receipt, f)
        out["receipt sampled ids"] = list(g.token_ids)
        out["receipt text sha256"] = hashlib.sha256(g.text.encode("utf-8")).hexdigest()
    if receipt_in:
        res = loomrt.verify_receipt(receipt_in, m)
        out["receipt verified (other arch's)"] = bool(res.ok)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--verify-receipt", default=None)
    ap.add_argument("--make-receipt", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--replay-only", action="store_true")
    a = ap.parse_args()
    n = 4 if a.quick else 16
    out = {"info.machine": platform.machine(), "info.byteorder": sys.byteorder, "info.python": platform.python_version(),
           "info.numpy": np.__version__, "info.loomrt": os.path.dirname(loomrt.__file__),
           "numerics version": loomrt.NUMERICS_VERSION}
    with tempfile.TemporaryDirectory() as tmp:
        if a.replay_only:  # only replay the other machine's receipt
            res = loomrt.verify_receipt(a.verify_receipt, loomrt.load(a.model, threads=2))
            out["receipt verified (other arch's)"] = bool(res.ok)
        else:
            t0 = time.time()
            folder = golden(out, tmp, a.quick)
            t1 = time.time()
            ctypes_binding(out, folder, None if a.quick else a.model, n)
            t2 = time.time()
            if a.model:
                real_model(out, a.model, n, a.verify_receipt, a.make_receipt, a.quick)
            out["info.seconds (golden, ctypes, model)"] = [round(t1 - t0, 1), round(t2 - t1, 1), round(time.time() - t2, 1)]
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
