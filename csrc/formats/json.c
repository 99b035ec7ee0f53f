/* json.c -- a strict RFC 8259 JSON parser into an arena-backed DOM.
 *
 * What "strict" means here:
 *   - exactly one value, optionally surrounded by whitespace (space, tab, CR, LF); a
 *     leading UTF-8 byte order mark is skipped (RFC 8259 section 8.1 allows that);
 *   - no comments, no trailing commas, no single quotes, no NaN/Infinity, no leading
 *     zeros, no '+' sign, no hex numbers;
 *   - strings: valid UTF-8, no raw control characters (< 0x20), only the escapes of the
 *     RFC; \uXXXX surrogate pairs are combined and lone surrogates are an error;
 *   - duplicate keys in one object are an error (loomrt would otherwise silently pick one);
 *   - nesting depth <= LJ_MAX_DEPTH; numbers that overflow a double are an error.
 *
 * Memory: every node, string and member array lives in an arena owned by the lj_doc, so
 * lj_free is one walk over a few blocks. Containers collect their children on a scratch
 * stack first (their size is unknown until the closing bracket) and are copied into the
 * arena once complete.
 *
 * Numbers are converted by the routine in the "numbers" section below, which uses only
 * integer arithmetic and IEEE + - * / on doubles, so every platform gets the same bits. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"

#define LJ_MAX_DEPTH 64
#define LJ_BLOCK_SIZE ((size_t)64 * 1024)
#define LJ_MAX_DIGITS 19 /* significant digits kept in the uint64 mantissa */

/* ---- arena ------------------------------------------------------------------------------ */

typedef struct lj_block {
  struct lj_block *next;
  size_t used, cap;
  max_align_t mem[]; /* cap bytes follow */
} lj_block;

struct lj_doc {
  lj_block *blocks; /* newest first */
  lj_value root;
};

/* Aligned bump allocation; NULL on out-of-memory (or absurd sizes). */
static void *arena_alloc(lj_doc *d, size_t n) {
  const size_t align = _Alignof(max_align_t);
  if (n > SIZE_MAX / 2) return NULL;
  n = (n + align - 1) / align * align;
  if (n == 0) n = align;
  lj_block *b = d->blocks;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > LJ_BLOCK_SIZE ? n : LJ_BLOCK_SIZE;
    b = (lj_block *)malloc(sizeof(lj_block) + cap);
    if (!b) return NULL;
    b->next = d->blocks;
    b->used = 0;
    b->cap = cap;
    d->blocks = b;
  }
  void *p = (unsigned char *)b->mem + b->used;
  b->used += n;
  return p;
}

void lj_free(lj_doc *doc) {
  if (!doc) return;
  lj_block *b = doc->blocks;
  while (b) {
    lj_block *next = b->next;
    free(b);
    b = next;
  }
  free(doc);
}

/* ---- parser state and errors ------------------------------------------------------------ */

/* A child being collected for an unfinished container; key_pos is the byte offset of the
 * key (objects only), used to point at a duplicate. */
typedef struct scratch_entry {
  lj_member m;
  size_t key_pos;
} scratch_entry;

typedef struct parser {
  const char *text;
  size_t len, pos;
  const char *what;
  lj_doc *doc;
  scratch_entry *stack; /* children of all open containers, innermost last */
  size_t top, cap;
} parser;

/* "<what>: line L, column C: <problem>" for the byte offset `at`. Columns count code
 * points, starting at 1. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int32_t perr(const parser *p, size_t at, const char *fmt, ...) {
  char problem[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(problem, sizeof problem, fmt, ap);
  va_end(ap);
  if (at > p->len) at = p->len;
  size_t line = 1, col = 1;
  for (size_t i = 0; i < at; i++) {
    unsigned char c = (unsigned char)p->text[i];
    if (c == '\n') {
      line++;
      col = 1;
    } else if ((c & 0xC0) != 0x80) {
      col++;
    }
  }
  return lrt_err(LRT_ERR_FORMAT, "%s: line %zu, column %zu: %s", p->what, line, col, problem);
}

static int32_t oom(const parser *p) {
  return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory while parsing JSON", p->what);
}

/* Describe the byte at `at` for "unexpected ..." messages. */
static void describe_byte(const parser *p, size_t at, char *buf, size_t cap) {
  if (at >= p->len) {
    snprintf(buf, cap, "end of input");
    return;
  }
  unsigned char c = (unsigned char)p->text[at];
  if (c > 0x20 && c < 0x7F)
    snprintf(buf, cap, "character '%c'", c);
  else
    snprintf(buf, cap, "byte 0x%02X", c);
}

static int32_t unexpected(const parser *p, const char *expected) {
  char d[32];
  describe_byte(p, p->pos, d, sizeof d);
  return perr(p, p->pos, "unexpected %s, expected %s", d, expected);
}

/* Length of the longest prefix of s (at most max bytes) that does not split a UTF-8
 * sequence: used to quote keys in messages. */
static int quote_len(const char *s, size_t n, size_t max) {
  if (n <= max) return (int)n;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
  return (int)max;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int32_t push(parser *p, const scratch_entry *e) {
  if (p->top == p->cap) {
    size_t ncap = p->cap ? p->cap * 2 : 64;
    if (ncap > SIZE_MAX / sizeof(scratch_entry)) return oom(p);
    scratch_entry *ns = (scratch_entry *)realloc(p->stack, ncap * sizeof(scratch_entry));
    if (!ns) return oom(p);
    p->stack = ns;
    p->cap = ncap;
  }
  p->stack[p->top++] = *e;
  return LRT_OK;
}

/* ---- numbers ---------------------------------------------------------------------------- *
 * A literal is reduced to m * 10^e with m < 10^19 (the first 19 significant digits; later
 * nonzero digits only set `sticky`). Then:
 *   1. fast path: m <= 2^53 and |e| <= 22 -- m and 10^|e| are exact doubles, so one
 *      multiplication or division gives the correctly rounded result;
 *   2. otherwise an approximation from a fixed sequence of multiplications/divisions by
 *      exact powers of ten (within a few ulps), refined to the correctly rounded double
 *      by exact big-integer comparisons against the midpoints between neighbouring
 *      doubles (the classic "AlgorithmR" correction step).
 * Step 2 uses integer arithmetic only, so the final bits do not depend on how the
 * platform evaluated the approximation. Truncating beyond 19 digits changes the result
 * only for literals within 1e-19 (relative) of a rounding boundary. */

static const double k_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Fixed-size big natural numbers, little-endian 32-bit words. 80 words (2560 bits) bound
 * every operand: at most 2^64 * 10^310 * 2^1075 or 2^54 * 10^343 * 2^971. */
#define BIG_WORDS 80
typedef struct big {
  uint32_t w[BIG_WORDS];
  int n; /* words in use; w[n-1] != 0 unless n == 0 */
} big;

static void big_set(big *b, uint64_t v) {
  b->n = 0;
  while (v) {
    b->w[b->n++] = (uint32_t)v;
    v >>= 32;
  }
}

static void big_mul_small(big *b, uint32_t f) {
  uint64_t carry = 0;
  for (int i = 0; i < b->n; i++) {
    uint64_t t = (uint64_t)b->w[i] * f + carry;
    b->w[i] = (uint32_t)t;
    carry = t >> 32;
  }
  if (carry && b->n < BIG_WORDS) b->w[b->n++] = (uint32_t)carry;
}

static void big_mul_pow5(big *b, int64_t k) {
  for (; k >= 13; k -= 13) big_mul_small(b, 1220703125u); /* 5^13 */
  static const uint32_t p5[13] = {1, 5, 25, 125, 625, 3125, 15625, 78125, 390625, 1953125,
                                  9765625, 48828125, 244140625};
  if (k > 0) big_mul_small(b, p5[k]);
}

static void big_shl(big *b, int64_t k) {
  if (b->n == 0 || k <= 0) return;
  int words = (int)(k / 32), bits = (int)(k % 32);
  if (b->n + words + 1 > BIG_WORDS) return; /* cannot happen within the bounds above */
  b->w[b->n + words] = 0;
  for (int i = b->n - 1; i >= 0; i--) {
    uint64_t v = (uint64_t)b->w[i] << bits;
    b->w[i + words + 1] |= (uint32_t)(v >> 32);
    b->w[i + words] = (uint32_t)v;
  }
  for (int i = 0; i < words; i++) b->w[i] = 0;
  b->n += words + 1;
  while (b->n > 0 && b->w[b->n - 1] == 0) b->n--;
}

static int big_cmp(const big *a, const big *b) {
  if (a->n != b->n) return a->n < b->n ? -1 : 1;
  for (int i = a->n - 1; i >= 0; i--)
    if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
  return 0;
}

/* Sign of m * 10^e - k * 2^q, exactly. */
static int cmp_dec_bin(uint64_t m, int64_t e, uint64_t k, int64_t q) {
  big l, r;
  big_set(&l, m);
  big_set(&r, k);
  if (e >= 0) {
    big_mul_pow5(&l, e);
    big_shl(&l, e);
  } else {
    big_mul_pow5(&r, -e);
    big_shl(&r, -e);
  }
  if (q >= 0)
    big_shl(&r, q);
  else
    big_shl(&l, -q);
  return big_cmp(&l, &r);
}

static uint64_t dbl_bits(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static double bits_dbl(uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* Sign of v - (midpoint between the positive finite double `bits` and its successor). */
static int cmp_upper_mid(uint64_t m, int64_t e, int sticky, uint64_t bits) {
  uint64_t ef = bits >> 52, frac = bits & ((UINT64_C(1) << 52) - 1);
  uint64_t mant = ef ? frac | (UINT64_C(1) << 52) : frac;
  int64_t exp2 = ef ? (int64_t)ef - 1075 : -1074;
  /* x = mant * 2^exp2 and the successor is (mant + 1) * 2^exp2, also across binades. */
  int c = cmp_dec_bin(m, e, 2 * mant + 1, exp2 - 1);
  if (c == 0 && sticky) c = 1; /* dropped digits make v a little larger */
  return c;
}

/* m * 10^e (m != 0, rounded to nearest even) into *out. 0 when it overflows a double. */
static int dec_to_double(uint64_t m, int64_t e, int nd, int sticky, double *out) {
  const uint64_t max_bits = UINT64_C(0x7FEFFFFFFFFFFFFF); /* DBL_MAX */
  if (nd + e > 310) return 0;  /* >= 10^309 */
  if (nd + e <= -324) {        /* < 10^-324, below half the smallest subnormal */
    *out = 0.0;
    return 1;
  }
  if (!sticky && m <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
    *out = e >= 0 ? (double)m * k_pow10[e] : (double)m / k_pow10[-e];
    return 1;
  }
  double x = (double)m;
  int64_t k = e;
  if (k >= 0) {
    for (; k > 22; k -= 22) x *= 1e22;
    x *= k_pow10[k];
  } else {
    for (; k < -22; k += 22) x /= 1e22;
    x /= k_pow10[-k];
  }
  uint64_t bits = dbl_bits(x);
  if (bits > max_bits) bits = max_bits; /* the approximation overflowed */
  for (int iter = 0; iter < 4096; iter++) {
    int c = cmp_upper_mid(m, e, sticky, bits);
    if (c > 0 || (c == 0 && (bits & 1))) { /* v rounds to the successor */
      if (bits == max_bits) return 0;
      bits++;
      continue;
    }
    if (bits == 0) break;
    c = cmp_upper_mid(m, e, sticky, bits - 1);
    if (c < 0 || (c == 0 && !((bits - 1) & 1))) { /* v rounds to the predecessor */
      bits--;
      continue;
    }
    break;
  }
  *out = bits_dbl(bits);
  return 1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int32_t parse_number(parser *p, lj_value *out) {
  const char *t = p->text;
  size_t start = p->pos, i = p->pos;
  int neg = 0, nd = 0, sticky = 0, is_int = 1, int_ovf = 0;
  uint64_t m = 0, mag = 0;
  int64_t dexp = 0;

  if (t[i] == '-') {
    neg = 1;
    i++;
  }
  if (i >= p->len || !is_digit(t[i])) {
    p->pos = i;
    return unexpected(p, "a digit");
  }
  if (t[i] == '0' && i + 1 < p->len && is_digit(t[i + 1]))
    return perr(p, i, "numbers must not have leading zeros");
  for (; i < p->len && is_digit(t[i]); i++) { /* integer part */
    int d = t[i] - '0';
    if (mag > (UINT64_MAX - (uint64_t)d) / 10) int_ovf = 1;
    else mag = mag * 10 + (uint64_t)d;
    if (nd < LJ_MAX_DIGITS) {
      if (m || d) {
        m = m * 10 + (uint64_t)d;
        nd++;
      }
    } else {
      if (d) sticky = 1;
      dexp++;
    }
  }
  if (i < p->len && t[i] == '.') { /* fraction */
    is_int = 0;
    i++;
    if (i >= p->len || !is_digit(t[i])) {
      p->pos = i;
      return unexpected(p, "a digit after the decimal point");
    }
    for (; i < p->len && is_digit(t[i]); i++) {
      int d = t[i] - '0';
      if (nd < LJ_MAX_DIGITS) {
        if (m || d) {
          m = m * 10 + (uint64_t)d;
          nd++;
        }
        dexp--;
      } else if (d) {
        sticky = 1;
      }
    }
  }
  if (i < p->len && (t[i] == 'e' || t[i] == 'E')) { /* exponent */
    int eneg = 0;
    int64_t ev = 0;
    is_int = 0;
    i++;
    if (i < p->len && (t[i] == '+' || t[i] == '-')) eneg = t[i++] == '-';
    if (i >= p->len || !is_digit(t[i])) {
      p->pos = i;
      return unexpected(p, "a digit in the exponent");
    }
    for (; i < p->len && is_digit(t[i]); i++)
      if (ev < 1000000000) ev = ev * 10 + (t[i] - '0'); /* saturate: far out of range */
    dexp += eneg ? -ev : ev;
  }
  p->pos = i;

  double v = 0.0;
  if (m != 0 && !dec_to_double(m, dexp, nd, sticky, &v))
    return perr(p, start, "number %.*s is too large for a double", quote_len(t + start, i - start, 40),
                t + start);
  out->type = LJ_NUMBER;
  out->number = neg ? -v : v;
  if (is_int && !int_ovf) {
    if (!neg && mag <= (uint64_t)INT64_MAX) {
      out->is_integer = 1;
      out->integer = (int64_t)mag;
    } else if (neg && mag <= (uint64_t)INT64_MAX + 1) {
      out->is_integer = 1;
      out->integer = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    }
  }
  return LRT_OK;
}

/* ---- strings ---------------------------------------------------------------------------- */

static int hex4(const char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    char c = s[k];
    uint32_t d;
    if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
    else return 0;
    v = v * 16 + d;
  }
  *out = v;
  return 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parse the string at p->pos (a '"') into a NUL-terminated arena copy. The unescaped
 * text is never longer than the raw text, which sizes the allocation. */
static int32_t parse_string(parser *p, const char **out, size_t *out_len) {
  const char *t = p->text;
  size_t start = p->pos + 1, end = start;
  for (;;) { /* pass 1: find the closing quote */
    if (end >= p->len) return perr(p, p->pos, "unterminated string");
    if (t[end] == '"') break;
    end += t[end] == '\\' ? 2 : 1;
  }
  char *dst = (char *)arena_alloc(p->doc, end - start + 1);
  if (!dst) return oom(p);
  size_t o = 0, i = start;
  while (i < end) { /* pass 2: validate and unescape */
    unsigned char c = (unsigned char)t[i];
    if (c < 0x20)
      return perr(p, i, "control character U+%04X must be escaped in a string", (unsigned)c);
    if (c >= 0x80) {
      size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
      if (n == 0 || end - i < n || !lrt_utf8_valid(t + i, n))
        return perr(p, i, "invalid UTF-8 byte sequence in a string");
      memcpy(dst + o, t + i, n);
      o += n;
      i += n;
      continue;
    }
    if (c != '\\') {
      dst[o++] = (char)c;
      i++;
      continue;
    }
    char e = t[i + 1]; /* pass 1 guarantees i + 1 < end */
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e != 0 && simple) {
      static const char repl[] = "\"\\/\b\f\n\r\t";
      dst[o++] = repl[simple - "\"\\/bfnrt"];
      i += 2;
      continue;
    }
    if (e != 'u') return perr(p, i, "invalid escape sequence in a string");
    uint32_t cp, lo;
    if (end - i < 6 || !hex4(t + i + 2, &cp))
      return perr(p, i, "\\u must be followed by 4 hex digits");
    if (cp >= 0xDC00 && cp <= 0xDFFF)
      return perr(p, i, "lone low surrogate \\u%04X in a string", (unsigned)cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (end - i < 12 || t[i + 6] != '\\' || t[i + 7] != 'u' || !hex4(t + i + 8, &lo) ||
          lo < 0xDC00 || lo > 0xDFFF)
        return perr(p, i, "high surrogate \\u%04X is not followed by a low surrogate",
                    (unsigned)cp);
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      i += 6;
    }
    o += put_utf8(dst + o, cp);
    i += 6;
  }
  dst[o] = 0;
  p->pos = end + 1;
  *out = dst;
  *out_len = o;
  return LRT_OK;
}

/* ---- values ----------------------------------------------------------------------------- */

static int32_t parse_value(parser *p, lj_value *out, int depth);

static int cmp_entry_keys(const void *a, const void *b) {
  const scratch_entry *x = *(const scratch_entry *const *)a, *y = *(const scratch_entry *const *)b;
  if (x->m.key_len != y->m.key_len) return x->m.key_len < y->m.key_len ? -1 : 1;
  int c = memcmp(x->m.key, y->m.key, x->m.key_len);
  if (c) return c;
  return x < y ? -1 : x > y; /* file order among equal keys */
}

/* Error on the second occurrence of any key among entries [0, n). */
static int32_t check_duplicates(parser *p, const scratch_entry *e, size_t n) {
  const scratch_entry *dup = NULL;
  if (n < 2) return LRT_OK;
  if (n <= 16) {
    for (size_t i = 1; i < n && !dup; i++)
      for (size_t j = 0; j < i; j++)
        if (e[i].m.key_len == e[j].m.key_len && !memcmp(e[i].m.key, e[j].m.key, e[i].m.key_len)) {
          dup = &e[i];
          break;
        }
  } else {
    const scratch_entry **idx = (const scratch_entry **)malloc(n * sizeof *idx);
    if (!idx) return oom(p);
    for (size_t i = 0; i < n; i++) idx[i] = &e[i];
    qsort(idx, n, sizeof *idx, cmp_entry_keys);
    for (size_t i = 1; i < n; i++)
      if (idx[i]->m.key_len == idx[i - 1]->m.key_len &&
          !memcmp(idx[i]->m.key, idx[i - 1]->m.key, idx[i]->m.key_len) &&
          (!dup || idx[i] < dup))
        dup = idx[i];
    free(idx);
  }
  if (!dup) return LRT_OK;
  return perr(p, dup->key_pos, "duplicate key \"%.*s\" in an object",
              quote_len(dup->m.key, dup->m.key_len, 80), dup->m.key);
}

static int32_t parse_container(parser *p, lj_value *out, int depth) {
  int is_obj = p->text[p->pos] == '{';
  char close = is_obj ? '}' : ']';
  if (depth >= LJ_MAX_DEPTH)
    return perr(p, p->pos, "nesting is deeper than %d levels", LJ_MAX_DEPTH);
  size_t base = p->top;
  int32_t st;
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->text[p->pos] == close) {
    p->pos++;
  } else {
    for (;;) {
      scratch_entry e;
      memset(&e, 0, sizeof e);
      if (is_obj) {
        if (p->pos >= p->len || p->text[p->pos] != '"') return unexpected(p, "a string key");
        e.key_pos = p->pos;
        if ((st = parse_string(p, &e.m.key, &e.m.key_len)) != LRT_OK) return st;
        skip_ws(p);
        if (p->pos >= p->len || p->text[p->pos] != ':') return unexpected(p, "':'");
        p->pos++;
        skip_ws(p);
      }
      if ((st = parse_value(p, &e.m.value, depth + 1)) != LRT_OK) return st;
      if ((st = push(p, &e)) != LRT_OK) return st;
      skip_ws(p);
      if (p->pos < p->len && p->text[p->pos] == ',') {
        p->pos++;
        skip_ws(p);
        continue;
      }
      if (p->pos < p->len && p->text[p->pos] == close) {
        p->pos++;
        break;
      }
      return unexpected(p, is_obj ? "',' or '}'" : "',' or ']'");
    }
  }
  size_t n = p->top - base;
  const scratch_entry *kids = n > 0 ? p->stack + base : NULL; /* stack may still be NULL */
  out->type = is_obj ? LJ_OBJECT : LJ_ARRAY;
  out->count = n;
  if (n > 0 && is_obj) {
    if ((st = check_duplicates(p, kids, n)) != LRT_OK) return st;
    lj_member *mem = (lj_member *)arena_alloc(p->doc, n * sizeof(lj_member));
    if (!mem) return oom(p);
    for (size_t i = 0; i < n; i++) mem[i] = kids[i].m;
    out->members = mem;
  } else if (n > 0) {
    lj_value *items = (lj_value *)arena_alloc(p->doc, n * sizeof(lj_value));
    if (!items) return oom(p);
    for (size_t i = 0; i < n; i++) items[i] = kids[i].m.value;
    out->items = items;
  }
  p->top = base;
  return LRT_OK;
}

static int32_t parse_literal(parser *p, const char *word, size_t n) {
  if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
    return perr(p, p->pos, "invalid literal (expected %s)", word);
  p->pos += n;
  return LRT_OK;
}

static int32_t parse_value(parser *p, lj_value *out, int depth) {
  memset(out, 0, sizeof *out);
  if (p->pos >= p->len) return unexpected(p, "a value");
  switch (p->text[p->pos]) {
    case '{':
    case '[':
      return parse_container(p, out, depth);
    case '"':
      out->type = LJ_STRING;
      return parse_string(p, &out->str, &out->str_len);
    case 't':
      out->type = LJ_BOOL;
      out->boolean = 1;
      return parse_literal(p, "true", 4);
    case 'f':
      out->type = LJ_BOOL;
      return parse_literal(p, "false", 5);
    case 'n':
      out->type = LJ_NULL;
      return parse_literal(p, "null", 4);
    default:
      if (p->text[p->pos] == '-' || is_digit(p->text[p->pos])) return parse_number(p, out);
      return unexpected(p, "a value");
  }
}

/* ---- public entry points ---------------------------------------------------------------- */

int32_t lj_parse(const char *text, size_t len, const char *what, lj_doc **out) {
  *out = NULL;
  if (!what) what = "JSON";
  if (!text && len > 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: NULL JSON text", what);
  parser p;
  memset(&p, 0, sizeof p);
  p.text = text ? text : "";
  p.len = len;
  p.what = what;
  p.doc = (lj_doc *)calloc(1, sizeof(lj_doc));
  if (!p.doc) return oom(&p);
  if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) p.pos = 3; /* byte order mark */
  skip_ws(&p);
  int32_t st = parse_value(&p, &p.doc->root, 0);
  if (st == LRT_OK) {
    skip_ws(&p);
    if (p.pos < p.len) st = unexpected(&p, "end of input after the JSON value");
  }
  free(p.stack);
  if (st != LRT_OK) {
    lj_free(p.doc);
    return st;
  }
  *out = p.doc;
  return LRT_OK;
}

const lj_value *lj_root(const lj_doc *doc) { return doc ? &doc->root : NULL; }

const lj_value *lj_get(const lj_value *obj, const char *key) {
  if (!obj || obj->type != LJ_OBJECT || !key) return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < obj->count; i++)
    if (obj->members[i].key_len == n && !memcmp(obj->members[i].key, key, n))
      return &obj->members[i].value;
  return NULL;
}
