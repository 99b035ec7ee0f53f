"""Side-by-side speed of loomrt, llama.cpp (llama-cpp-python) and HF transformers on the same
weights, per weight format and thread count, in one run, alternating systems; prints medians,
peak RSS, loomrt/peer ratios and loomrt's fraction of the bandwidth roofline.

    python benchmarks/bench.py [--model FILE.gguf] [--formats f32 bf16 f16 q8_0 q4_0 q4_1]
                               [--threads 1 2] [--repeats 3] [--systems loomrt llama.cpp]
                               [--quick] [--json FILE]

A thin wrapper around loomrt.bench (the same as `loomrt bench`; see its docstring for what is
measured). Needs for the peers: pip install llama-cpp-python torch transformers gguf.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's loomrt
from loomrt import errors  # noqa: E402
from loomrt.bench import add_arguments, run_from_args  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        return run_from_args(args)
    except errors.LoomrtError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
