/* tok_pretokenize.c -- the pre-tokenizer (pipeline step 3): Split, ByteLevel, Metaspace and
 * Digits steps, each on every piece of the previous step, the last one handing each piece
 * to the BPE model.
 *
 * The regular expressions are not interpreted: each supported expression has a
 * hand-written matcher that returns what a backtracking engine (Oniguruma, used by
 * tokenizers) returns for it, including the leftmost-first order of alternatives and the
 * backtracking of \s+(?!\S). Unicode classes come from unicode_tables.c. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- pattern matchers ------------------------------------------------------------------- */

#define IS_L(k) ((k) == UC_L)
#define IS_N(k) ((k) == UC_N)

static int lower_ascii(uint32_t c) { return (c >= 'A' && c <= 'Z') ? (int)(c + 32) : (int)c; }

/* Contraction at i ('s 't 're 've 'm 'll 'd); returns end index or 0. ci: case-insensitive
 * with Unicode simple folds (Oniguruma's (?i:...): U+017F folds to s, U+212A to k). */
static size_t m_contraction(const uint32_t *cp, size_t n, size_t i, int ci) {
  if (cp[i] != '\'' || i + 1 >= n) return 0;
  uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
  if (ci) {
    if (a == 0x17F) a = 's';
    a = (uint32_t)lower_ascii(a);
    b = (uint32_t)lower_ascii(b == 0x17F ? 's' : b);
  }
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
  if (i + 2 < n && ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))) return i + 3;
  return 0;
}

/* Match of pattern `pat` starting exactly at char i, as the end index; 0 = no match. */
static size_t pat_at(int pat, int ci, const uint32_t *cp, size_t n, size_t i) {
  uint32_t c = cp[i];
  int k = lrt_tok_uc_class(c);
  switch (pat) {
    case PAT_N1: return IS_N(k) ? i + 1 : 0;
    case PAT_DIGIT3:
      return i + 2 < n && c >= '0' && c <= '9' && cp[i + 1] >= '0' && cp[i + 1] <= '9' && cp[i + 2] >= '0' &&
                     cp[i + 2] <= '9' ? i + 3 : 0;
    case PAT_PUNCT:
    case PAT_PUNCT_TICK: {
      size_t j = i;
      while (j < n && (lrt_tok_uc_punct(cp[j]) || (cp[j] < 0x80 && strchr("$+<=>^~|", (int)cp[j]) && cp[j]) ||
                       (pat == PAT_PUNCT_TICK && cp[j] == '`')))
        j++;
      return j > i ? j : 0;
    }
    case PAT_N3:
    case PAT_NPLUS: {
      if (!IS_N(k)) return 0;
      size_t j = i + 1, lim = pat == PAT_N3 ? i + 3 : n;
      while (j < n && j < lim && IS_N(lrt_tok_uc_class(cp[j]))) j++;
      return j;
    }
    case PAT_GPT2: {
      size_t e;
      if (ci >= 0 && (e = m_contraction(cp, n, i, 0))) {
        /* GPT-2's contractions are case-sensitive */
        uint32_t a = cp[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd' || a == 'r' || a == 'v' || a == 'l') return e;
      }
      int kn = i + 1 < n ? lrt_tok_uc_class(cp[i + 1]) : -1;
      int sp_next = i + 1 < n && lrt_tok_uc_space(cp[i + 1]);
      /* ` ?\p{L}+` */
      if (c == ' ' && kn == UC_L) { size_t j = i + 2; while (j < n && IS_L(lrt_tok_uc_class(cp[j]))) j++; return j; }
      if (IS_L(k)) { size_t j = i + 1; while (j < n && IS_L(lrt_tok_uc_class(cp[j]))) j++; return j; }
      /* ` ?\p{N}+` */
      if (c == ' ' && kn == UC_N) { size_t j = i + 2; while (j < n && IS_N(lrt_tok_uc_class(cp[j]))) j++; return j; }
      if (IS_N(k)) { size_t j = i + 1; while (j < n && IS_N(lrt_tok_uc_class(cp[j]))) j++; return j; }
      /* ` ?[^\s\p{L}\p{N}]+` */
      size_t j = 0;
      if (c == ' ' && i + 1 < n && !sp_next && kn != UC_L && kn != UC_N) j = i + 1;
      else if (!lrt_tok_uc_space(c) && k != UC_L && k != UC_N) j = i;
      else j = (size_t)-1;
      if (j != (size_t)-1) {
        j++;
        while (j < n) { uint32_t d = cp[j]; int kd = lrt_tok_uc_class(d); if (lrt_tok_uc_space(d) || IS_L(kd) || IS_N(kd)) break; j++; }
        return j;
      }
      /* `\s+(?!\S)` then `\s+` */
      if (lrt_tok_uc_space(c)) {
        size_t r = i + 1;
        while (r < n && lrt_tok_uc_space(cp[r])) r++;
        if (r == n) return r;
        if (r - 1 > i) return r - 1;
        return r;
      }
      return 0;
    }
    case PAT_LLAMA3:
    case PAT_QWEN2: {
      size_t e = m_contraction(cp, n, i, ci);
      if (e) return e;
      int kn = i + 1 < n ? lrt_tok_uc_class(cp[i + 1]) : -1;
      /* `[^\r\n\p{L}\p{N}]?\p{L}+` */
      if (c != '\r' && c != '\n' && k != UC_L && k != UC_N && kn == UC_L) {
        size_t j = i + 2; while (j < n && IS_L(lrt_tok_uc_class(cp[j]))) j++; return j;
      }
      if (IS_L(k)) { size_t j = i + 1; while (j < n && IS_L(lrt_tok_uc_class(cp[j]))) j++; return j; }
      /* `\p{N}{1,3}` or `\p{N}` */
      if (IS_N(k)) {
        if (pat == PAT_QWEN2) return i + 1;
        size_t j = i + 1; while (j < n && j < i + 3 && IS_N(lrt_tok_uc_class(cp[j]))) j++; return j;
      }
      /* ` ?[^\s\p{L}\p{N}]+[\r\n]*` */
      size_t j = (size_t)-1;
      if (c == ' ' && i + 1 < n && !lrt_tok_uc_space(cp[i + 1]) && kn != UC_L && kn != UC_N) j = i + 1;
      else if (!lrt_tok_uc_space(c) && k != UC_L && k != UC_N) j = i;
      if (j != (size_t)-1) {
        j++;
        while (j < n) { uint32_t d = cp[j]; int kd = lrt_tok_uc_class(d); if (lrt_tok_uc_space(d) || IS_L(kd) || IS_N(kd)) break; j++; }
        while (j < n && (cp[j] == '\r' || cp[j] == '\n')) j++;
        return j;
      }
      if (lrt_tok_uc_space(c)) {
        size_t r = i + 1;
        while (r < n && lrt_tok_uc_space(cp[r])) r++;
        /* `\s*[\r\n]+`: up to the last line break of the whitespace run */
        for (size_t q = r; q > i; q--)
          if (cp[q - 1] == '\r' || cp[q - 1] == '\n') return q;
        /* `\s+(?!\S)` then `\s+` */
        if (r == n) return r;
        if (r - 1 > i) return r - 1;
        return r;
      }
      return 0;
    }
  }
  return 0;
}

/* ---- splitting ----------------------------------------------------------------------------- */

int lrt_tok_seg_push(size_t **seg, size_t *cap, size_t *n, size_t a, size_t b, size_t m) {
  if (!lrt_tok_grow((void **)seg, cap, (*n + 1) * 3, sizeof(size_t))) return 0;
  (*seg)[*n * 3] = a; (*seg)[*n * 3 + 1] = b; (*seg)[*n * 3 + 2] = m;
  (*n)++;
  return 1;
}

/* Decode s into lv->cp / lv->coff. Returns the number of chars or (size_t)-1 on OOM. */
static size_t decode_chars(level *lv, const char *s, size_t n) {
  if (!lrt_tok_grow((void **)&lv->cp, &lv->cp_cap, n + 1, sizeof(uint32_t)) ||
      !lrt_tok_grow((void **)&lv->coff, &lv->coff_cap, n + 2, sizeof(size_t)))
    return (size_t)-1;
  size_t k = 0;
  const uint8_t *u = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    int l;
    lv->cp[k] = lrt_tok_u8_dec(u, n, i, &l);
    lv->coff[k++] = i;
    i += (size_t)l;
  }
  lv->coff[k] = n;
  return k;
}

/* Apply a split behaviour to the (start, end, is_match) list in place; returns the count
 * of kept (start, end, 0) segments (removed matches are dropped). */
static size_t apply_behavior(size_t *seg, size_t n, int behavior) {
  size_t k = 0;
  int prev_match = 0;
  switch (behavior) {
    case BEH_ISOLATED:
      for (size_t i = 0; i < n; i++) seg[i * 3 + 2] = 0;
      return n;
    case BEH_REMOVED:
      for (size_t i = 0; i < n; i++)
        if (!seg[i * 3 + 2]) { seg[k * 3] = seg[i * 3]; seg[k * 3 + 1] = seg[i * 3 + 1]; seg[k * 3 + 2] = 0; k++; }
      return k;
    case BEH_CONTIGUOUS:
      for (size_t i = 0; i < n; i++) {
        int m = (int)seg[i * 3 + 2];
        if (k && m == prev_match) seg[(k - 1) * 3 + 1] = seg[i * 3 + 1];
        else { seg[k * 3] = seg[i * 3]; seg[k * 3 + 1] = seg[i * 3 + 1]; seg[k * 3 + 2] = 0; k++; }
        prev_match = m;
      }
      return k;
    case BEH_PREV:
      for (size_t i = 0; i < n; i++) {
        int m = (int)seg[i * 3 + 2];
        if (m && !prev_match && k) seg[(k - 1) * 3 + 1] = seg[i * 3 + 1];
        else { seg[k * 3] = seg[i * 3]; seg[k * 3 + 1] = seg[i * 3 + 1]; seg[k * 3 + 2] = 0; k++; }
        prev_match = m;
      }
      return k;
    case BEH_NEXT: {
      /* right to left, then reverse */
      size_t w = n; /* write from the end */
      for (size_t ii = n; ii-- > 0;) {
        int m = (int)seg[ii * 3 + 2];
        size_t a = seg[ii * 3], b = seg[ii * 3 + 1];
        if (m && !prev_match && w < n) seg[w * 3] = a;
        else { w--; seg[w * 3] = a; seg[w * 3 + 1] = b; seg[w * 3 + 2] = 0; }
        prev_match = m;
      }
      size_t cnt = n - w;
      memmove(seg, seg + w * 3, cnt * 3 * sizeof(size_t));
      return cnt;
    }
  }
  return n;
}

/* Split s by a step's matcher into lv->seg; returns count or -1 on OOM. */
static int64_t split_matches(const pt_step *p, level *lv, const char *s, size_t n) {
  size_t ns = 0;
  if (p->type == PT_SPLIT && p->pat == PAT_LITERAL) {
    size_t prev = 0, i = 0;
    if (p->lit_len == 0) { /* an empty pattern never matches */
      if (!lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, 0, n, 0)) return -1;
      return (int64_t)ns;
    }
    while (i + p->lit_len <= n) {
      if (memcmp(s + i, p->lit, p->lit_len) == 0) {
        if (i > prev && !lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, prev, i, 0)) return -1;
        if (!lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, i, i + p->lit_len, 1)) return -1;
        i += p->lit_len;
        prev = i;
      } else {
        i++;
      }
    }
    if (prev < n && !lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, prev, n, 0)) return -1;
    return (int64_t)ns;
  }
  size_t nc = decode_chars(lv, s, n);
  if (nc == (size_t)-1) return -1;
  const uint32_t *cp = lv->cp;
  size_t prev = 0;
  for (size_t i = 0; i < nc;) {
    size_t e = 0;
    if (p->type == PT_SPLIT) e = pat_at(p->pat, p->ci, cp, nc, i);
    else if (p->type == PT_DIGITS) e = IS_N(lrt_tok_uc_class(cp[i])) ? i + 1 : 0;
    else if (p->type == PT_METASPACE) e = cp[i] == p->repl ? i + 1 : 0;
    else e = pat_at(PAT_GPT2, 0, cp, nc, i); /* ByteLevel's own expression */
    if (e) {
      if (i > prev && !lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, lv->coff[prev], lv->coff[i], 0)) return -1;
      if (!lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, lv->coff[i], lv->coff[e], 1)) return -1;
      i = e;
      prev = e;
    } else {
      i++;
    }
  }
  if (prev < nc && !lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, lv->coff[prev], n, 0)) return -1;
  if (p->type == PT_SPLIT && p->invert)
    for (size_t k = 0; k < ns; k++) lv->seg[k * 3 + 2] ^= 1;
  return (int64_t)ns;
}

static int32_t recurse_segments(enc_ctx *c, int step, level *lv, size_t ns, const char *s, int at_origin) {
  /* the segments may be overwritten by deeper levels only at level step+1; copy not needed
   * because each level owns its own seg array */
  for (size_t k = 0; k < ns; k++) {
    size_t a = lv->seg[k * 3], b = lv->seg[k * 3 + 1];
    if (b <= a) continue;
    int32_t st = lrt_tok_pretok(c, step + 1, s + a, b - a, at_origin && a == 0);
    if (st) return st;
  }
  return LRT_OK;
}

int32_t lrt_tok_pretok(enc_ctx *c, int step, const char *s, size_t n, int at_origin) {
  const lrt_tokenizer *t = c->t;
  if (n == 0) return LRT_OK;
  if (step == t->n_pt) return lrt_tok_bpe_word(c, s, n);
  const pt_step *p = &t->pt[step];
  level *lv = &c->lv[step];
  switch (p->type) {
    case PT_SPLIT:
    case PT_DIGITS: {
      int64_t ns = split_matches(p, lv, s, n);
      if (ns < 0) return lrt_tok_oom();
      int beh = p->type == PT_SPLIT ? p->behavior : (p->individual ? BEH_ISOLATED : BEH_CONTIGUOUS);
      size_t kept = apply_behavior(lv->seg, (size_t)ns, beh);
      return recurse_segments(c, step, lv, kept, s, at_origin);
    }
    case PT_METASPACE: {
      sbuf *b = &lv->buf;
      b->n = 0;
      int starts = n >= p->lit_len && memcmp(s, p->lit, p->lit_len) == 0;
      (void)starts;
      /* replace ' ' first, then check the prefix of the replaced text */
      sbuf *o = b;
      for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { if (!lrt_tok_sb_put(o, p->lit, p->lit_len)) return lrt_tok_oom(); }
        else if (!lrt_tok_sb_put(o, s + i, 1)) return lrt_tok_oom();
      }
      int has = o->n >= p->lit_len && memcmp(o->p, p->lit, p->lit_len) == 0;
      if (!has && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && at_origin))) {
        if (!lrt_tok_sb_put(o, p->lit, p->lit_len)) return lrt_tok_oom();
        memmove(o->p + p->lit_len, o->p, o->n - p->lit_len);
        memcpy(o->p, p->lit, p->lit_len);
      }
      if (!p->split) return lrt_tok_pretok(c, step + 1, o->p, o->n, at_origin);
      int64_t ns = split_matches(p, lv, o->p, o->n);
      if (ns < 0) return lrt_tok_oom();
      size_t kept = apply_behavior(lv->seg, (size_t)ns, BEH_NEXT);
      return recurse_segments(c, step, lv, kept, o->p, at_origin);
    }
    case PT_BYTELEVEL: {
      /* prefix space, optional GPT-2 split, then the byte -> char mapping of each piece.
       * The mapping happens in the next "virtual" level: pieces are mapped one by one. */
      sbuf *b = &lv->buf;
      b->n = 0;
      const char *src = s;
      size_t sn = n;
      if (p->add_prefix_space && s[0] != ' ') {
        if (!lrt_tok_sb_put(b, " ", 1) || !lrt_tok_sb_put(b, s, n)) return lrt_tok_oom();
        src = b->p;
        sn = b->n;
      }
      size_t ns = 0;
      if (p->use_regex) {
        int64_t r = split_matches(p, lv, src, sn);
        if (r < 0) return lrt_tok_oom();
        ns = (size_t)r;
      } else {
        lv->seg_cap = lv->seg_cap; /* one segment: the whole piece */
        if (!lrt_tok_seg_push(&lv->seg, &lv->seg_cap, &ns, 0, sn, 0)) return lrt_tok_oom();
      }
      level *mv = &c->lv[TOK_MAX_STEPS + 1 - 1]; /* scratch for the mapped piece */
      /* each level needs its own mapping buffer because deeper steps may recurse; use a
       * fresh sbuf per piece in level lv (seg is stable) */
      (void)mv;
      for (size_t k = 0; k < ns; k++) {
        size_t a = lv->seg[k * 3], e = lv->seg[k * 3 + 1];
        if (e <= a) continue;
        sbuf mapped = {0};
        for (size_t i = a; i < e; i++) {
          uint8_t ch = (uint8_t)src[i];
          if (!lrt_tok_sb_put(&mapped, t->bt.enc[ch], t->bt.enc_len[ch])) { free(mapped.p); return lrt_tok_oom(); }
        }
        int32_t st = lrt_tok_pretok(c, step + 1, mapped.p, mapped.n, at_origin && a == 0);
        free(mapped.p);
        if (st) return st;
      }
      return LRT_OK;
    }
  }
  return lrt_err(LRT_ERR_INTERNAL, "unknown pre-tokenizer step");
}
