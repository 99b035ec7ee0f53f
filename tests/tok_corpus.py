"""A large, varied, seeded text corpus for the C tokenizer tests (test_c_tokenizer.py).

Everything is generated here, from Python's own files and unicodedata, with a seeded
random.Random (no downloads):

* code: Python standard-library sources;
* documentation: text files and docstrings of installed packages;
* prose in many scripts: words of letters of each script (Latin with diacritics, Greek,
  Cyrillic, Armenian, Hebrew, Arabic, Devanagari, Bengali, Tamil, Thai, Georgian, Hangul,
  Hiragana, Katakana, CJK, Ethiopic, ...), the script's punctuation and digits, several
  kinds of spaces;
* whitespace: runs of spaces, tabs, CRLF / CR / LF, vertical tab, form feed, NBSP, ideographic
  space, line/paragraph separators, indentation;
* emoji: skin tones, ZWJ families, flags, keycaps, tag sequences, variation selectors;
* combining marks (Zalgo stacks), NFD / NFKD forms, Hangul jamo, contractions in odd cases;
* odd Unicode: unassigned and private-use code points, noncharacters, controls, the BOM,
  characters of every plane;
* random byte strings decoded with errors="replace".

documents(seed, size) returns a list of strings of roughly `size` characters in total.
"""
from __future__ import annotations

import glob
import os
import random
import sys
import sysconfig
import unicodedata
from typing import Dict, List

SCRIPTS = [
    "LATIN", "GREEK", "CYRILLIC", "ARMENIAN", "HEBREW", "ARABIC", "DEVANAGARI", "BENGALI", "TAMIL",
    "TELUGU", "THAI", "GEORGIAN", "HANGUL SYLLABLE", "HIRAGANA", "KATAKANA", "CJK UNIFIED IDEOGRAPH",
    "ETHIOPIC", "KHMER", "MYANMAR", "SINHALA", "GUJARATI", "MONGOLIAN", "TIBETAN", "CHEROKEE",
    "MATHEMATICAL BOLD", "FULLWIDTH LATIN", "COPTIC", "RUNIC", "GLAGOLITIC", "CANADIAN SYLLABICS",
]
PUNCT = [". ", ", ", "! ", "? ", "; ", ": ", "。", "，", "、", "،", "؟", "।", "॥", "…", " — ", "«", "»",
         "“", "”", "„", "‘", "’", "'", "\"", "(", ")", "[", "]", "¿", "¡", "·", "・", "「", "」", "｡"]
SPACES = [" ", " ", " ", " ", "  ", "\t", "\u00a0", "\u3000", "\u2009", "\u202f", "\u2002", "\u200b"]
DIGITS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "০১২৩৪৫৬৭৮৯", "０１２３４５６７８９",
          "௦௧௨௩௪௫௬௭௮௯", "๐๑๒๓๔๕๖๗๘๙", "²³¹¼½¾", "ⅠⅡⅢⅣⅤ", "①②③④⑤"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "🏳️‍🌈", "❤️", "✌🏿", "👩🏻‍💻", "🧑‍🤝‍🧑", "1️⃣", "#️⃣", "🤷‍♀️",
         "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "☺︎", "☺️", "🫠", "🦀", "🐍", "👁‍🗨"]
CONTRACTIONS = ["don't", "I'LL", "we've", "they'D", "it's", "You'RE", "o'clock", "rock'n'roll", "'s", "' s",
                "can'T", "ma'am", "y'all", "'ſ", "x'Ve", "'ll'll", "’s", "Ǆ'S"]
COMBINING = [chr(c) for c in range(0x300, 0x370)] + [chr(c) for c in range(0x1AB0, 0x1AC0)] + ["\u20dd", "\u0e49"]


def _script_letters() -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {s: [] for s in SCRIPTS}
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat[0] not in "LM":
            continue
        name = unicodedata.name(ch, "")
        for s in SCRIPTS:
            if name.startswith(s):
                out[s].append(ch)
                break
    for s in SCRIPTS:
        if not out[s]:
            out[s] = ["a"]
    return out


def _prose(rng: random.Random, letters: Dict[str, List[str]], size: int) -> str:
    parts: List[str] = []
    total = 0
    while total < size:
        script = rng.choice(SCRIPTS)
        pool = letters[script]
        common = pool[: max(8, len(pool) // 20)] if rng.random() < 0.7 else pool
        sent = []
        for _ in range(rng.randint(3, 14)):
            w = "".join(rng.choice(common) for _ in range(rng.randint(1, 9)))
            r = rng.random()
            if r < 0.1:
                w = w.capitalize()
            elif r < 0.14:
                w = "".join(rng.choice(rng.choice(DIGITS)) for _ in range(rng.randint(1, 7)))
            elif r < 0.17:
                w = rng.choice(CONTRACTIONS)
            elif r < 0.19:
                w += rng.choice(COMBINING)
            sent.append(w)
            sent.append(rng.choice(SPACES) if rng.random() < 0.3 else " ")
        sent.append(rng.choice(PUNCT))
        if rng.random() < 0.2:
            sent.append(rng.choice(["\n", "\n\n", "\r\n", " \n", "\n  "]))
        s = "".join(sent)
        parts.append(s)
        total += len(s)
    return "".join(parts)


def _files_text(rng: random.Random, size: int, code: bool) -> str:
    if code:
        root = sysconfig.get_paths()["stdlib"]
        files = glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "*", "*.py"))
    else:
        root = sysconfig.get_paths()["purelib"]
        files = (glob.glob(os.path.join(root, "*.dist-info", "METADATA"))
                 + glob.glob(os.path.join(root, "*.dist-info", "LICENSE*"))
                 + glob.glob(os.path.join(root, "*", "*.md")) + glob.glob(os.path.join(root, "*", "*.txt")))
    files = sorted(f for f in files if os.path.isfile(f))
    rng.shuffle(files)
    out: List[str] = []
    total = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                data = fh.read(60000)
        except OSError:
            continue
        text = data.decode("utf-8", errors="replace")
        if not code and rng.random() < 0.3:
            text = text.replace("\n", "\r\n")
        out.append(text)
        total += len(text)
        if total >= size:
            break
    if total < size:  # no package files (unlikely): docstrings of loaded modules
        for mod in list(sys.modules.values()):
            doc = getattr(mod, "__doc__", None)
            if isinstance(doc, str):
                out.append(doc)
                total += len(doc)
            if total >= size:
                break
    return "".join(out)[:size]


def _whitespace(rng: random.Random, size: int) -> str:
    out: List[str] = []
    total = 0
    ws = [" ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085",
          "\u1680", "\u2000", "\u200a", "\u205f", "\u180e", "\ufeff"]
    while total < size:
        kind = rng.random()
        if kind < 0.4:
            s = "".join(rng.choice(ws) for _ in range(rng.randint(1, 40)))
        elif kind < 0.7:
            s = " " * rng.randint(1, 64) + rng.choice(["x", "if", "return 1", "}", "#", "1", "é"])
        else:
            s = rng.choice(["a", "word", "42", "!", "é", "中"]) + rng.choice(ws) * rng.randint(1, 6)
        out.append(s)
        total += len(s)
    return "".join(out)


def _emoji_marks(rng: random.Random, size: int) -> str:
    out: List[str] = []
    total = 0
    while total < size:
        r = rng.random()
        if r < 0.4:
            s = "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6))) + rng.choice(["", " ", "!", "ok"])
        elif r < 0.6:
            base = rng.choice("aeiouzAZ한字ع")
            s = base + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 12))) + " "
        elif r < 0.8:
            w = rng.choice(["Café", "naïve", "Ångström", "한국어", "ﬁnance", "Ⅻ", "x²", "ｶﾀｶﾅ", "Å", "ḱṷṓn"])
            s = unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKC", "NFKD"]), w) + " "
        else:
            s = rng.choice(CONTRACTIONS) + rng.choice([" ", "", "s", "S "])
        out.append(s)
        total += len(s)
    return "".join(out)


def _odd(rng: random.Random, size: int) -> str:
    out: List[str] = []
    total = 0
    while total < size:
        r = rng.random()
        if r < 0.5:
            n = rng.randint(1, 30)
            raw = bytes(rng.randrange(256) for _ in range(n))
            s = raw.decode("utf-8", errors="replace")
        else:
            cps = []
            for _ in range(rng.randint(1, 12)):
                plane = rng.choice([0, 0, 0, 1, 2, 3, 14, 15, 16])
                cp = plane * 0x10000 + rng.randrange(0x10000)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0xFFFD
                cps.append(chr(cp))
            s = "".join(cps) + rng.choice(["", " ", "\n"])
        out.append(s)
        total += len(s)
    return "".join(out)


def documents(seed: int = 0, size: int = 3_000_000) -> List[str]:
    """The corpus as documents of 1 to 3000 characters (total about `size` characters)."""
    rng = random.Random(seed)
    letters = _script_letters()
    parts = [
        _files_text(rng, size * 30 // 100, code=True),
        _files_text(rng, size * 15 // 100, code=False),
        _prose(rng, letters, size * 30 // 100),
        _whitespace(rng, size * 9 // 100),
        _emoji_marks(rng, size * 8 // 100),
        _odd(rng, size * 8 // 100),
    ]
    docs: List[str] = []
    for text in parts:
        i = 0
        while i < len(text):
            n = rng.choice([1, 5, 40, 300, 1000, 3000, rng.randint(1, 3000)])
            docs.append(text[i:i + n])
            i += n
    rng.shuffle(docs)
    return docs
