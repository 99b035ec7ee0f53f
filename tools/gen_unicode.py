"""Generate csrc/text/unicode_tables.c from Python's unicodedata (run: python tools/gen_unicode.py).

The C tokenizer needs, per code point:
  - the general-category class used by pre-tokenizer expressions: letter (\\p{L}),
    number (\\p{N}), mark (\\p{M}), punctuation (\\p{P}) or other; stored as a sorted list
    of range starts;
  - for NFC: canonical combining classes, canonical decompositions and the primary
    composites (pairs that compose), Hangul syllables are algorithmic in the C code.

Python 3.11's unicodedata is Unicode 14, while the regular-expression engine of HuggingFace
`tokenizers` (Oniguruma, the reference the C tokenizer must agree with) knows Unicode 16:
about 9,500 code points unassigned in 14 are letters, numbers or marks there. When
`tokenizers` is installed, the class of every code point is also asked of Oniguruma
(\\p{L} / \\p{N} / \\p{M} splits over all code points) and its answer is used where the two
differ; the count of such code points is written into the output. Its NFC/NFD (the Rust
unicode-normalization crate) is older than Unicode 14 for some characters (e.g. U+1ABF has
combining class 0 there): with `tokenizers` installed, combining classes, decompositions and
compositions that `tokenizers`' NFD/NFC do not apply are left out, so the C normalizer
gives the same text.

The output records the Unicode version of the generating Python so a regenerated file that
changes version shows up in review. Tables are compact: ranges, not per-code-point arrays.
"""
from __future__ import annotations

import os
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "csrc", "text", "unicode_tables.c")

# classes: 0 other, 1 letter, 2 other number (No), 3 mark, 4 decimal digit (Nd), 5 letter
# number (Nl), 6 connector punctuation (Pc), 7 other Alphabetic (e.g. circled letters), 8 other
# punctuation (Pd Ps Pe Pi Pf Po): 1, 2, 4 and 5 make \\p{L} / \\p{N}; 6 and 8 make \\p{P};
# 1, 3-7 make Rust's \\w (added tokens with single_word).
def py_class(ch: str) -> int:
    cat = unicodedata.category(ch)
    c = {"Nd": 4, "Nl": 5, "No": 2, "Pc": 6}.get(cat) or {"L": 1, "M": 3, "P": 8}.get(cat[0], 0)
    if c == 0 and ALPHABETIC is not None and ALPHABETIC.match(ch):
        c = 7
    return c


try:  # Other_Alphabetic code points outside L / M / Nl (only the regex module knows the property)
    import regex as _regex
    ALPHABETIC = _regex.compile(r"\p{Alphabetic}")
except ImportError:
    ALPHABETIC = None


def oniguruma_classes() -> dict[int, int] | None:
    """Class of every code point according to tokenizers' Oniguruma, or None without it."""
    try:
        from tokenizers import Regex, pre_tokenizers
    except ImportError:
        return None
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    out: dict[int, int] = {}
    for cls, pat in ((4, r"\p{P}"), (3, r"\p{M}"), (2, r"\p{N}"), (1, r"\p{L}")):  # 2: some number, 4: some P
        split = pre_tokenizers.Split(Regex(pat), behavior="removed")
        for i in range(0, len(cps), 50000):
            part = cps[i:i + 50000]
            covered = bytearray(len(part))
            for _, (a, b) in split.pre_tokenize_str("".join(map(chr, part))):
                covered[a:b] = b"\x01" * (b - a)
            for k, c in enumerate(part):
                if not covered[k]:
                    out[c] = cls
    return out


def category_ranges(onig: dict[int, int] | None) -> tuple[list[int], int]:
    """Packed (start << 4 | class) for each run of equal class, covering 0..0x10FFFF, and the
    number of code points whose class comes from Oniguruma rather than unicodedata (the
    coarse classes of oniguruma_classes: 1 L, 2 N, 3 M, 4 P; 0 none of them)."""
    out = []
    prev = None
    changed = 0
    for cp in range(0x110000):
        c = py_class(chr(cp))
        if c == 7 and unicodedata.category(chr(cp)) == "Cn":
            c = 0  # newer than Python's tables: Oniguruma decides below
        coarse = {4: 2, 5: 2, 6: 4, 7: 0, 8: 4}.get(c, c)
        if onig is not None and not 0xD800 <= cp <= 0xDFFF and onig.get(cp, 0) != coarse:
            c = {4: 8}.get(onig.get(cp, 0), onig.get(cp, 0))
            changed += 1
        if c != prev:
            out.append(cp << 4 | c)
            prev = c
    return out, changed


def ccc_ranges() -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for cp in range(0x110000):
        k = unicodedata.combining(chr(cp))
        if k:
            if out and out[-1][1] == cp - 1 and out[-1][2] == k:
                out[-1] = (out[-1][0], cp, k)
            else:
                out.append((cp, cp, k))
    return out


def decompositions() -> list[tuple[int, int, int, int]]:
    """(cp, first, second or 0, composes) for every canonical decomposition (no Hangul)."""
    out = []
    for cp in range(0x110000):
        if 0xAC00 <= cp <= 0xD7A3:
            continue
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, (hex(cp), d)
        a = parts[0]
        b = parts[1] if len(parts) == 2 else 0
        composes = 0
        if len(parts) == 2:
            # a primary composite: NFC of its canonical decomposition gives it back
            full = unicodedata.normalize("NFD", chr(cp))
            composes = int(unicodedata.normalize("NFC", full) == chr(cp)
                           and unicodedata.combining(chr(a)) == 0)
        out.append((cp, a, b, composes))
    return out


def tokenizers_normalization_filter(ccc: list[tuple[int, int, int]], dec: list[tuple[int, int, int, int]]):
    """Drop the Unicode-14 normalization data that tokenizers' NFD / NFC do not know."""
    try:
        from tokenizers import normalizers
    except ImportError:
        return ccc, dec, 0
    nfc, nfd = normalizers.NFC(), normalizers.NFD()
    dropped = 0
    keep_ccc = []
    for a, b, k in ccc:
        run_start = None
        for cp in range(a, b + 1):
            # a mark of class k < 240 is moved before U+0345 (class 240) only when known
            known = k >= 240 or nfd.normalize_str("\u0345" + chr(cp))[0] == chr(cp)
            dropped += not known
            if known and run_start is None:
                run_start = cp
            if not known and run_start is not None:
                keep_ccc.append((run_start, cp - 1, k))
                run_start = None
        if run_start is not None:
            keep_ccc.append((run_start, b, k))
    keep_dec = []
    for cp, a, b, c in dec:
        ch = chr(cp)
        if nfd.normalize_str(ch) != unicodedata.normalize("NFD", ch):
            dropped += 1
            continue
        if c and nfc.normalize_str(unicodedata.normalize("NFD", ch)) != ch:
            c = 0
            dropped += 1
        keep_dec.append((cp, a, b, c))
    return keep_ccc, keep_dec, dropped


def main() -> None:
    onig = oniguruma_classes()
    cats, changed = category_ranges(onig)
    ccc, dec, dropped = tokenizers_normalization_filter(ccc_ranges(), decompositions())
    lines = [
        "/* unicode_tables.c -- GENERATED by tools/gen_unicode.py from Python's unicodedata",
        f" * (Unicode {unicodedata.unidata_version}). Do not edit: regenerate. */",
        '#include "unicode_tables.h"',
        "",
        f"const char lrt_uc_version[] = \"{unicodedata.unidata_version}\";",
        "",
        "/* (first code point << 4 | class) of each run; class 0 other, 1 L, 2 No, 3 M, 4 Nd, 5 Nl,",
        " * 6 Pc, 7 other Alphabetic, 8 other P.",
        f" * {changed} code points take their class from tokenizers' Oniguruma (newer Unicode)"
        + (" */" if onig is not None else " (tokenizers was not installed: none) */"),
        f"const uint32_t lrt_uc_cat_n = {len(cats)};",
        "const uint32_t lrt_uc_cat[] = {",
    ]
    for i in range(0, len(cats), 8):
        lines.append("  " + ", ".join(f"0x{v:x}" for v in cats[i:i + 8]) + ",")
    lines += ["};", "", f"/* canonical combining classes: first, last, class ({dropped} entries that tokenizers'",
              " * NFC/NFD do not know are left out of this and the next tables) */",
              f"const uint32_t lrt_uc_ccc_n = {len(ccc)};", "const uint32_t lrt_uc_ccc[][3] = {"]
    for i in range(0, len(ccc), 4):
        lines.append("  " + " ".join(f"{{0x{a:x}, 0x{b:x}, {k}}}," for a, b, k in ccc[i:i + 4]))
    lines += ["};", "",
              "/* canonical decompositions sorted by code point: cp, first, second (0: singleton),",
              " * 1 when cp is a primary composite (first + second compose to it in NFC) */",
              f"const uint32_t lrt_uc_dec_n = {len(dec)};", "const uint32_t lrt_uc_dec[][4] = {"]
    for i in range(0, len(dec), 3):
        lines.append("  " + " ".join(f"{{0x{a:x}, 0x{b:x}, 0x{c:x}, {d}}}," for a, b, c, d in dec[i:i + 3]))
    lines += ["};", ""]
    comp = sorted((a, b, cp) for cp, a, b, c in dec if c)
    lines += ["/* primary composites sorted by (first, second): first, second, composite */",
              f"const uint32_t lrt_uc_comp_n = {len(comp)};", "const uint32_t lrt_uc_comp[][3] = {"]
    for i in range(0, len(comp), 4):
        lines.append("  " + " ".join(f"{{0x{a:x}, 0x{b:x}, 0x{c:x}}}," for a, b, c in comp[i:i + 4]))
    lines += ["};", ""]
    with open(OUT, "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines))
    print(f"wrote {OUT}: {len(cats)} category runs, {len(ccc)} ccc runs, {len(dec)} decompositions",
          file=sys.stderr)


if __name__ == "__main__":
    main()
