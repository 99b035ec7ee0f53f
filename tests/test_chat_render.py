"""Chat templates rendered as transformers renders them (issue 20, chat part).

loomrt's Python renderer (loomrt.tokenizer.Tokenizer.apply_chat_template) against
transformers' own ``render_jinja_template`` on templates that use what the newer families'
templates use (written here in their style: the public templates themselves are not
available offline): ``strftime_now`` (Llama 3.x, SmolLM3, Mistral Small date headers), tests
of ``tools`` / ``documents`` against none, assistant tool calls with ``content`` None, tool
results, and reasoning passed as ``thinking``. Every conversation must render identically,
or both must raise. ``date=`` pins what ``strftime_now`` sees.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models as tok_models

from loomrt.tokenizer import Tokenizer

render_jinja_template = pytest.importorskip("transformers.utils.chat_template_utils").render_jinja_template

LLAMA32_STYLE = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now(\"%d %b %Y\") %}{%- else %}{%- set date_string = \"26 Jul 2024\" %}"
    "{%- endif %}{%- endif %}\n"
    "{%- if tools is not none %}Tools: {{ tools | tojson }}\n{%- endif %}"
    "Today Date: {{ date_string }}\n"
    "{%- for m in messages %}<{{ m.role }}>"
    "{%- if m.content is not none %}{{ m.content }}{%- endif %}"
    "{%- if m.tool_calls %}{%- for tc in m.tool_calls %}[call {{ tc.function.name }} "
    "{{ tc.function.arguments | tojson }}]{%- endfor %}{%- endif %}"
    "</{{ m.role }}>{%- endfor %}"
    "{%- if add_generation_prompt %}<assistant>{%- endif %}"
)
SMOLLM3_STYLE = (
    "{%- set today = strftime_now(\"%d %B %Y\") -%}"
    "<|im_start|>system\nToday: {{ today }}\n"
    "{%- if documents is not none %}{%- for d in documents %}[doc {{ d.title }}: {{ d.text }}]{%- endfor %}{%- endif %}"
    "{%- if tools %}{{ tools | length }} tools{%- endif %}<|im_end|>\n"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n"
    "{%- if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{%- endif %}"
    "{{ m.content if m.content is not none else '' }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
STRICT_TOOLS = (  # raises when tools is not none and not a list, like several real templates
    "{%- if tools is not none and tools is not iterable %}{{ raise_exception('tools must be a list') }}{%- endif %}"
    "{%- for m in messages %}{{ m.role }}: {{ m.content }}\n{%- endfor %}"
)
TEMPLATES = {"llama32-style": LLAMA32_STYLE, "smollm3-style": SMOLLM3_STYLE, "strict-tools": STRICT_TOOLS}

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CONVERSATIONS = {
    "plain": ([{"role": "user", "content": "Hi ü"}], {}),
    "system": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], {}),
    "multi-turn": ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "thinking": "hmm"},
                    {"role": "user", "content": "c"}], {}),
    "tool-call": ([{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                   {"role": "tool", "content": "22 C", "name": "get_weather"}], {"tools": [TOOL]}),
    "documents": ([{"role": "user", "content": "Summarise"}], {"documents": [{"title": "T", "text": "body"}]}),
}


def tokenizer(template: str) -> Tokenizer:
    """A three-token tokenizer folder (tokenizer.json made by HF tokenizers, <s> and </s> named
    in tokenizer_config.json with the template), loaded by loomrt's C tokenizer."""
    hf = HFTokenizer(tok_models.BPE({"<s>": 0, "</s>": 1, "x": 2}, merges=[]))
    folder = tempfile.mkdtemp(prefix="chat-render-")
    hf.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "chat_template": template}, f)
    tok = Tokenizer.from_folder(folder)
    shutil.rmtree(folder)
    return tok


def transformers_render(template: str, messages, **kw) -> str:
    rendered, _ = render_jinja_template([messages], chat_template=template, add_generation_prompt=True,
                                        bos_token="<s>", eos_token="</s>", **kw)
    return rendered[0]


@pytest.mark.parametrize("conv", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_renders_as_transformers(name, conv):
    template = TEMPLATES[name]
    messages, kw = CONVERSATIONS[conv]
    try:
        expected = transformers_render(template, messages, **kw)
    except Exception as exc:  # both must raise
        with pytest.raises(Exception):
            tokenizer(template).apply_chat_template(messages, **kw)
        print(f"both raise ({type(exc).__name__})")
        return
    today = datetime.date.today()
    got = tokenizer(template).apply_chat_template(messages, **kw)
    if datetime.date.today() != today:  # rendered across midnight: try again
        expected = transformers_render(template, messages, **kw)
        got = tokenizer(template).apply_chat_template(messages, **kw)
    assert got == expected
    # the caller's messages are not modified (transformers renders plain copies too)
    assert all("reasoning_content" not in m for m in messages)


def test_strftime_now_pinned_by_date():
    tok = tokenizer(LLAMA32_STYLE)
    msgs = [{"role": "user", "content": "hi"}]
    a = tok.apply_chat_template(msgs, date=datetime.date(2025, 3, 9))
    assert "Today Date: 09 Mar 2025" in a
    assert a == tok.apply_chat_template(msgs, date=datetime.datetime(2025, 3, 9, 23, 59))
    assert datetime.date.today().strftime("%d %b %Y") in tok.apply_chat_template(msgs) or \
        datetime.date.today() != datetime.date(2025, 3, 9)
    with pytest.raises(Exception):
        tok.apply_chat_template(msgs, date="2025-03-09")


def test_tools_absent_is_none_not_undefined():
    """`tools is not none` must be false when no tools are given (a template that renders a
    tools block for an undefined `tools` would differ from transformers)."""
    out = tokenizer(LLAMA32_STYLE).apply_chat_template([{"role": "user", "content": "hi"}], date=datetime.date(2024, 1, 1))
    assert "Tools:" not in out
    out = tokenizer(LLAMA32_STYLE).apply_chat_template([{"role": "user", "content": "hi"}], tools=[TOOL],
                                                       date=datetime.date(2024, 1, 1))
    assert "Tools: [" in out


def test_model_chat_date_and_cli_flag(micro_folder, capsys):
    import loomrt
    from loomrt.cli import main

    m = loomrt.Model(micro_folder, tokenizer=tokenizer(LLAMA32_STYLE))
    m.chat_date = datetime.date(2025, 3, 9)
    assert "Today Date: 09 Mar 2025" in m.apply_chat_template("hi")
    assert "Today Date: 01 Jan 2024" in m.apply_chat_template("hi", date=datetime.date(2024, 1, 1))
    assert main(["hash", micro_folder, "hi", "--chat", "--date", "9 March"]) != 0
    assert "--date" in capsys.readouterr().err
