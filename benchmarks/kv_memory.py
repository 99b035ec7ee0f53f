"""KV cache memory of sliding-window families: the ring (default) against every position kept
(LRT_OPEN_FULL_KV, what loomrt allocated before the ring).

The KV cache depends only on the attention shape (layers, KV heads, head dim, window, which
layers are windowed, context), so each published config is kept for those and shrunk
elsewhere (hidden 64, FFN 128, vocabulary 264): random weights, built with transformers in a
temporary folder (Phi-3 is left out: its head_dim is hidden / heads, so its KV width
cannot be kept with a small hidden size). For each: the bound at full context from lrt_session_kv_rows (the limit of
a session of the model's context; `loomrt info` prints the same number), and, for the shapes
whose window is short enough to wrap in a quick run, the bytes a session really holds after
--tokens tokens (Session.kv_bytes), ring and full.

    python benchmarks/kv_memory.py [--tokens 2048] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import loomrt  # noqa: E402

SMALL = dict(hidden_size=64, intermediate_size=128, vocab_size=264, bos_token_id=1, eos_token_id=2, pad_token_id=0)

# attention shapes of the published config.json files
SHAPES: Dict[str, Dict[str, Any]] = {
    "gemma-3-270m": dict(cls="Gemma3TextConfig", num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                         head_dim=256, sliding_window=512, max_position_embeddings=32768,
                         layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3),
    "gemma-3-1b": dict(cls="Gemma3TextConfig", num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1,
                       head_dim=256, sliding_window=512, max_position_embeddings=32768,
                       layer_types=[("full_attention" if (i + 1) % 6 == 0 else "sliding_attention") for i in range(26)]),
    "gemma-2-2b": dict(cls="Gemma2Config", num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                       head_dim=256, sliding_window=4096, max_position_embeddings=8192),
    "mistral-7b-v0.1": dict(cls="MistralConfig", num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                            head_dim=128, sliding_window=4096, max_position_embeddings=32768),
}


def build(name: str, root: str) -> str:
    import torch
    import transformers as tf

    spec = dict(SHAPES[name])
    cls = getattr(tf, spec.pop("cls"))
    cfg = cls(**SMALL, **spec)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    folder = os.path.join(root, name)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"loomrt {loomrt.__version__}; {time.strftime('%Y-%m-%d')}; measured after {args.tokens} tokens\n")
    print(f"{'shape':16} {'window':>6} {'windowed':>8} {'context':>7} {'full ctx: ring MiB':>18} {'full MiB':>9} "
          f"{'at N: ring MiB':>14} {'full MiB':>9}")
    with tempfile.TemporaryDirectory() as root:
        for name in SHAPES:
            folder = build(name, root)
            row = []
            for full_kv in (False, True):
                m = loomrt.load(folder, threads=args.threads, full_kv=full_kv)
                i = m.info
                per_pos = 2 * i["kv_heads"] * i["head_dim"] * 4
                s = m.session(context=i["context_length"])
                row.append(s.kv_rows()[1] * per_pos)
                n = min(args.tokens, i["context_length"])
                if i["sliding_window"] + 127 < n:  # the ring wraps within the run: measure
                    s.eval([(7 * k + 3) % 250 + 3 for k in range(n)])
                    row.append(s.kv_bytes())
                else:
                    row.append(None)
            print(f"{name:16} {i['sliding_window']:>6} {i['sliding_layers']:>4} / {i['layers']:<2} "
                  f"{i['context_length']:>7} {mib(row[0]):>18} {mib(row[2]):>9} "
                  f"{(mib(row[1]) if row[1] is not None else '-'):>14} {(mib(row[3]) if row[3] is not None else '-'):>9}")


if __name__ == "__main__":
    main()
