"""Foreign exceptions and tracebacks become typed loomrt errors that name the file or argument
(issue 11 item 6).

* A hostile tokenizer.json makes the HF ``tokenizers`` library panic (its Rust
  ``PanicException`` derives from ``BaseException``: ``except Exception`` does not catch it),
  at load (a ``Precompiled`` normalizer with a broken charsmap) or at encode (a truncation
  stride not below its max_length). loomrt now tokenizes in C only: the same files give typed
  errors naming tokenizer.json, and truncation / padding sections are ignored as transformers
  ignores them unless asked, so prompts are never cut silently.
* A deeply nested tokenizer_config.json (or tokenizer.json, generation_config.json) makes
  Python's json raise ``RecursionError``.
* ``loomrt verify`` on a receipt that is not UTF-8 (or nested too deeply) printed a traceback.
* ``model.chat([{"role": "user"}])`` blamed the model file's chat template for the caller's
  malformed message.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

import loomrt
import models
from loomrt import cli


def _tokenizer_json(vocab_size: int, **sections) -> dict:
    """A minimal byte-level BPE tokenizer.json over the micro model's vocabulary."""
    tokens, merges = models.byte_level_vocab(vocab_size - 4, [("#", "$"), ("%", "&"), ("#$", "%&"), ("(", ")")])
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
          "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                             "use_regex": True},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                    "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    tj.update(sections)
    return tj


@pytest.fixture
def folder(micro_folder, tmp_path):
    """folder(**files) -> a copy of the micro model with the given extra files (dicts as JSON)."""
    def make(**files) -> str:
        d = str(tmp_path / f"m{len(os.listdir(tmp_path))}")
        shutil.copytree(micro_folder, d)
        for name, content in files.items():
            name = name.replace("__", ".")
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(os.path.join(d, name), mode) as f:
                f.write(content if isinstance(content, (bytes, str)) else json.dumps(content))
        return d

    return make


V = models.MICRO_CONFIG["vocab_size"]


def test_valid_tokenizer_json_loads(folder):
    """Control: the base tokenizer.json of the cases below is fine."""
    m = loomrt.load(folder(tokenizer__json=_tokenizer_json(V)), threads=1)
    assert m.encode("#$%&") == [V - 2]


def test_tokenizers_panic_at_load(folder):
    """A tokenizer.json that makes the HF tokenizers library panic (a BaseException that
    ``except Exception`` misses) is a typed loomrt error naming the file: loomrt tokenizes in
    C, so the model still loads for token-id use, and text use says why it cannot."""
    from tokenizers import Tokenizer as HFTokenizer

    bad = _tokenizer_json(V, normalizer={"type": "Precompiled", "precompiled_charsmap": "AAAA"})
    try:  # the case is real: HF panics on it
        HFTokenizer.from_str(json.dumps(bad))
        raise AssertionError("tokenizers accepted the hostile file")
    except BaseException as exc:  # noqa: B036 - the point: it is not an Exception
        assert not isinstance(exc, Exception) and type(exc).__name__ == "PanicException"
    d = folder(tokenizer__json=bad)
    m = loomrt.load(d, threads=1)
    assert m.tokenizer is None and m.logits([1, 2, 3]).shape[-1] == V  # token ids still work
    for call in (lambda: m.encode("#$"), lambda: m.generate("#$", 2)):
        with pytest.raises(loomrt.LoomrtError, match=r"tokenizer\.json.*Precompiled"):
            call()
    with pytest.raises(loomrt.LoomrtError, match=r"tokenizer\.json") as e:
        loomrt.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    assert d in str(e.value)


@pytest.mark.parametrize("stride", [0, 5])
def test_truncation_in_tokenizer_json_is_off(folder, stride):
    """A truncation section in tokenizer.json (here max_length 2, and a stride that makes
    tokenizers panic at encode) is switched off, as transformers does unless truncation is
    asked for: prompts are never cut silently, and nothing panics."""
    trunc = {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": stride}
    m = loomrt.load(folder(tokenizer__json=_tokenizer_json(V, truncation=trunc,
                                                           padding={"strategy": {"Fixed": 64}, "direction": "Right",
                                                                    "pad_to_multiple_of": None, "pad_id": 0,
                                                                    "pad_type_id": 0, "pad_token": "!"})), threads=1)
    ref = loomrt.load(folder(tokenizer__json=_tokenizer_json(V)), threads=1)
    text = "#$%&()#$ ab"
    assert m.encode(text) == ref.encode(text) and len(m.encode(text)) > 2
    assert m.generate(text, 3).token_ids == ref.generate(text, 3).token_ids


@pytest.mark.parametrize("name", ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                                  "tokenizer.json"])
def test_deeply_nested_json(folder, name):
    deep = '{"a": ' * 100000 + "1" + "}" * 100000
    files = {"tokenizer__json": _tokenizer_json(V)}
    files[name.replace(".", "__")] = deep
    d = folder(**files)
    with pytest.raises(loomrt.FormatError, match="nest") as e:
        loomrt.Tokenizer.from_folder(d)
    assert name in str(e.value)
    if name == "tokenizer.json":  # the model loads for token-id use; text use says why not
        m = loomrt.load(d, threads=1)
        with pytest.raises(loomrt.FormatError, match=r"tokenizer\.json.*nest"):
            m.encode("#$")
    elif name != "generation_config.json":  # the C config reader refuses that one first (depth > 64)
        with pytest.raises(loomrt.FormatError, match=name.replace(".", r"\.")):
            loomrt.load(d, threads=1)


@pytest.mark.parametrize("content", [b'{"receipt": "\xff\xfe"}', b"\xff" * 16, b"\x80abc",
                                     ('[' * 100000 + ']' * 100000).encode()],
                         ids=["bad-utf8-inside", "binary", "lone-continuation", "deep"])
def test_verify_receipt_that_is_not_utf8_or_too_deep(tmp_path, micro_gguf, capsys, content):
    p = tmp_path / "r.json"
    p.write_bytes(content)
    rc = cli.main(["verify", str(p), "--model", micro_gguf])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and err.startswith("loomrt: error: "), err
    assert str(p) in err
    with pytest.raises(loomrt.FormatError, match="r.json"):
        loomrt.verify_receipt(str(p), loomrt.load(micro_gguf, threads=1))


@pytest.mark.parametrize("messages,where", [
    ([{"role": "user"}], r"messages\[0\].*'content'"),
    ([{"role": "system", "content": "be brief"}, {"role": "user", "content": 5}], r"messages\[1\]\['content'\]"),
    ([{"role": "user", "content": None}], r"messages\[0\]\['content'\]"),
    ([{"role": "user", "content": b"hi"}], r"messages\[0\]\['content'\]"),
    ([{"role": 3, "content": "hi"}], r"messages\[0\].*'role'"),
    ([{"content": "hi"}], r"messages\[0\].*'role'"),
    (["hi"], r"messages\[0\]"),
], ids=["no-content", "int-content", "none-content", "bytes-content", "int-role", "no-role", "not-a-dict"])
def test_chat_blames_the_message_not_the_model(micro_gguf, messages, where):
    m = loomrt.load(micro_gguf, threads=1)
    with pytest.raises(loomrt.InvalidArgumentError, match=where) as e:
        m.chat(messages, 2)
    assert "GGUF" not in str(e.value) and "template" not in str(e.value)
    ok = m.chat([{"role": "user", "content": "#$"}], 2)  # control: a well-formed message works
    assert len(ok.token_ids) <= 2
