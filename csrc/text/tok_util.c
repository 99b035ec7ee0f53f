/* tok_util.c -- the tokenizer's shared helpers: growing arrays, UTF-8 code points, copies,
 * the Unicode classes that the pre-tokenizer and the added-token split test, and the GPT-2
 * byte <-> unicode mapping of ByteLevel. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode_tables.h"

/* ---- small utilities -------------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  return realloc(p, (n && size) ? n * size : 1);
}

/* Grow *p (capacity *cap elements of `size`) to hold at least `need`. 0 on OOM. */
int lrt_tok_grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 16;
  while (c < need) {
    if (c > SIZE_MAX / 2) return 0;
    c *= 2;
  }
  void *q = xrealloc(*p, c, size);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

/* Decode one code point of valid UTF-8 at s[i] (n bytes total); *len = its length. */
uint32_t lrt_tok_u8_dec(const uint8_t *s, size_t n, size_t i, int *len) {
  uint8_t c = s[i];
  if (c < 0x80 || i + 1 >= n) { *len = 1; return c; }
  if (c < 0xE0) { *len = 2; return ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F); }
  if (c < 0xF0 || i + 2 >= n) {
    if (i + 2 >= n) { *len = 1; return c; }
    *len = 3;
    return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
  }
  if (i + 3 >= n) { *len = 1; return c; }
  *len = 4;
  return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
         ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}

int lrt_tok_u8_enc(uint32_t cp, char *o) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

int32_t lrt_tok_oom(void) { return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory while loading the tokenizer"); }

/* ---- Unicode classes ---------------------------------------------------------------------- */

/* Raw class of the generated table: 0 other, 1 L, 2 No, 3 M, 4 Nd, 5 Nl, 6 Pc, 7 other
 * Alphabetic, 8 other P. */
static int uc_raw(uint32_t cp) {
  if (cp > 0x10FFFF) return 0;
  size_t lo = 0, hi = lrt_uc_cat_n; /* last run whose start <= cp */
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if ((lrt_uc_cat[mid] >> 4) <= cp) lo = mid; else hi = mid;
  }
  return (int)(lrt_uc_cat[lo] & 15);
}

/* \p{L} / \p{N} / \p{M} / other, as Oniguruma (tokenizers' regex engine) sees them. */
int lrt_tok_uc_class(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UC_L;
    if (cp >= '0' && cp <= '9') return UC_N;
    return UC_OTHER;
  }
  static const int8_t coarse[16] = {UC_OTHER, UC_L, UC_N, UC_M, UC_N, UC_N, UC_OTHER, UC_OTHER, UC_OTHER};
  return coarse[uc_raw(cp)];
}

/* \p{P} (connector, dash, open, close, initial, final, other punctuation), as Oniguruma sees it. */
int lrt_tok_uc_punct(uint32_t cp) {
  if (cp < 0x80) return cp < 0x7F && cp > 0x20 && strchr("!\"#%&'()*,-./:;?@[\\]_{}", (int)cp) != NULL;
  int k = uc_raw(cp);
  return k == 6 || k == 8;
}

/* Unicode White_Space (Oniguruma's \s with Unicode, Rust's char::is_whitespace). */
int lrt_tok_uc_space(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/* Rust regex's \\w (tokenizers' single_word check): Alphabetic, marks, decimal digits,
 * connector punctuation, joiners. */
int lrt_tok_uc_word(uint32_t c) {
  if (c < 0x80) return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '_';
  if (c == 0x200C || c == 0x200D) return 1;
  int k = uc_raw(c);
  return k != 0 && k != 2 && k != 8;
}

/* ---- GPT-2 byte <-> unicode mapping ------------------------------------------------------- */

static uint32_t byte_char(int b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
  int n = 0;
  for (int x = 0; x < b; x++)
    if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
  return (uint32_t)(256 + n);
}

void lrt_tok_byte_tables_init(byte_tables *bt) {
  for (int i = 0; i < 324; i++) bt->dec[i] = -1;
  for (int b = 0; b < 256; b++) {
    uint32_t c = byte_char(b);
    bt->enc_len[b] = (uint8_t)lrt_tok_u8_enc(c, bt->enc[b]);
    bt->dec[c] = (int16_t)b;
  }
}
