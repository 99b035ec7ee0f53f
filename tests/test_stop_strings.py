"""Stop strings: text is cut before the first stop string, also when it spans several tokens,
in Model.generate / stream and in a weave (one StopScanner serves both)."""
from __future__ import annotations

import pytest

import loomrt
from loomrt.sampling import StopScanner
from test_weave import _write  # a seeded GGUF with a byte-level BPE tokenizer


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return _write(str(tmp_path_factory.mktemp("stop") / "m.gguf"), 11)


def _scan(pieces, stops):
    sc = StopScanner(stops)
    out = [sc.feed(p) for p in pieces]
    out.append(sc.finish())
    return "".join(out), sc.stopped, out


@pytest.mark.parametrize("pieces", [["abc", "de", "fXY", "Zgh"], ["a", "b", "c", "d", "e", "f", "X", "Y", "Z", "g"],
                                    ["abcdefXYZgh"]])
def test_scanner_cuts_at_first_stop_across_pieces(pieces):
    text, stopped, _ = _scan(pieces, ["XYZ", "nope"])
    assert text == "abcdef" and stopped


def test_scanner_holds_back_only_a_possible_stop_prefix():
    _, stopped, out = _scan(["abcd", "X", "Y", "q", "rs"], ["XYZ"])
    assert not stopped
    assert out[0] == "ab"  # the last len("XYZ") - 1 = 2 characters are held back
    assert "".join(out) == "abcdXYqrs"


def test_scanner_without_stops_holds_nothing():
    _, stopped, out = _scan(["ab", "c"], [])
    assert out == ["ab", "c", ""] and not stopped


def test_generate_and_stream_cut_at_stop(text_model):
    m = loomrt.load(text_model, threads=1)
    full = m.generate("Hello", 40).text
    assert len(full) > 12, full
    stop = full[8:11]  # spans token boundaries in general
    want = full[: full.find(stop)]
    g = m.generate("Hello", 40, stop=[stop])
    assert g.text == want and g.finish_reason == "stop"
    assert "".join(m.stream("Hello", 40, stop=[stop])) == want
    g2 = m.generate("Hello", 40, stop=["\x00never"])
    assert g2.text == full and g2.finish_reason == "length"


def test_weave_cuts_at_stop(text_model):
    m = loomrt.load(text_model, threads=1)
    full = m.generate("Hello", 40).text
    stop = full[8:11]
    w = loomrt.weave([m, m], weights=[1.0, 0.0], mode="mix")
    assert w.generate("Hello", 40).text == full  # weight 1 on one model: that model alone
    got = w.generate("Hello", 40, stop=[stop])
    assert got.text == full[: full.find(stop)]
