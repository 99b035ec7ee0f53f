/* tok_decode.c -- the decoders: lrt_tok_decode, lrt_tok_token_bytes and the per-token bytes
 * computed when the tokenizer is finished.
 *
 * Decoding runs the decoder chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 * Strip) over the token strings; invalid UTF-8 becomes U+FFFD like Rust's
 * from_utf8_lossy (one per maximal invalid subpart; ByteFallback: one per byte). */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- decode ----------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p[0..n), or 0 when p starts an invalid one.
 * *bad = length of the maximal subpart of a valid sequence when invalid (>= 1). */
static size_t u8_seq(const uint8_t *p, size_t n, size_t *bad) {
  uint8_t c = p[0];
  *bad = 1;
  if (c < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
  else return 0;
  size_t k = 1;
  if (k < n && p[k] >= lo && p[k] <= hi) {
    k++;
    while (k < len && k < n && (p[k] & 0xC0) == 0x80) k++;
  }
  if (k == len) return len;
  *bad = k;
  return 0;
}

typedef struct slist { sbuf b; size_t *off; size_t n, cap; } slist;

static int sl_begin(slist *l) { /* start a new string */
  if (!lrt_tok_grow((void **)&l->off, &l->cap, l->n + 2, sizeof(size_t))) return 0;
  if (l->n == 0) l->off[0] = l->b.n;
  return 1;
}
static int sl_end(slist *l) { l->off[++l->n] = l->b.n; return 1; }
static void sl_reset(slist *l) { l->b.n = 0; l->n = 0; }
static const char *sl_str(const slist *l, size_t i, size_t *n) {
  *n = l->off[i + 1] - l->off[i];
  return l->b.p ? l->b.p + l->off[i] : "";
}

/* Append bytes with invalid UTF-8 replaced by U+FFFD (Rust from_utf8_lossy). */
static int put_lossy(sbuf *o, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t bad;
    size_t l = u8_seq(p + i, n - i, &bad);
    if (l) { if (!lrt_tok_sb_put(o, (const char *)p + i, l)) return 0; i += l; }
    else { if (!lrt_tok_sb_put(o, "\xEF\xBF\xBD", 3)) return 0; i += bad; }
  }
  return 1;
}

static int parse_byte_token(const char *s, size_t n, uint8_t *out) {
  /* "<0xNN>" as tokenizers' ByteFallback reads it (u8::from_str_radix on two chars) */
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char ch = s[i];
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
    else if (ch == '+' && i == 3) { d = 0; }
    else return 0;
    v = v * 16 + d;
  }
  *out = (uint8_t)v;
  return 1;
}

/* Run one decoder step from `in` to `out`. */
static int32_t dc_apply(const lrt_tokenizer *t, const dc_step *d, const slist *in, slist *out) {
  sl_reset(out);
  size_t n;
  switch (d->type) {
    case DC_BYTELEVEL: {
      sbuf raw = {0};
      for (size_t i = 0; i < in->n; i++) {
        const char *s = sl_str(in, i, &n);
        size_t start = raw.n, j = 0;
        int ok = 1;
        while (j < n) {
          int l;
          uint32_t cp = lrt_tok_u8_dec((const uint8_t *)s, n, j, &l);
          int b = cp < 324 ? t->bt.dec[cp] : -1;
          if (b < 0) { ok = 0; break; }
          char ch = (char)b;
          if (!lrt_tok_sb_put(&raw, &ch, 1)) { free(raw.p); return lrt_tok_oom(); }
          j += (size_t)l;
        }
        if (!ok) { raw.n = start; if (!lrt_tok_sb_put(&raw, s, n)) { free(raw.p); return lrt_tok_oom(); } }
      }
      if (!sl_begin(out) || !put_lossy(&out->b, (const uint8_t *)(raw.p ? raw.p : ""), raw.n)) { free(raw.p); return lrt_tok_oom(); }
      sl_end(out);
      free(raw.p);
      return LRT_OK;
    }
    case DC_METASPACE:
    case DC_REPLACE: {
      char rep[4];
      int rl = d->type == DC_METASPACE ? lrt_tok_u8_enc(d->repl, rep) : 0;
      for (size_t i = 0; i < in->n; i++) {
        const char *s = sl_str(in, i, &n);
        if (!sl_begin(out)) return lrt_tok_oom();
        size_t j = 0;
        while (j < n) {
          if (d->type == DC_METASPACE && n - j >= (size_t)rl && memcmp(s + j, rep, (size_t)rl) == 0) {
            if (!(i == 0 && d->prepend != PREPEND_NEVER) && !lrt_tok_sb_put(&out->b, " ", 1)) return lrt_tok_oom();
            j += (size_t)rl;
          } else if (d->type == DC_REPLACE && d->a_len && n - j >= d->a_len && memcmp(s + j, d->a, d->a_len) == 0) {
            if (!lrt_tok_sb_put(&out->b, d->b, d->b_len)) return lrt_tok_oom();
            j += d->a_len;
          } else {
            if (!lrt_tok_sb_put(&out->b, s + j, 1)) return lrt_tok_oom();
            j++;
          }
        }
        sl_end(out);
      }
      return LRT_OK;
    }
    case DC_BYTEFALLBACK: {
      uint8_t *pend = NULL;
      size_t np = 0, pcap = 0;
      for (size_t i = 0; i <= in->n; i++) {
        uint8_t byte;
        const char *s = i < in->n ? sl_str(in, i, &n) : NULL;
        if (s && parse_byte_token(s, n, &byte)) {
          if (!lrt_tok_grow((void **)&pend, &pcap, np + 1, 1)) { free(pend); return lrt_tok_oom(); }
          pend[np++] = byte;
          continue;
        }
        if (np) {
          if (lrt_utf8_valid((const char *)pend, np)) {
            if (!sl_begin(out) || !lrt_tok_sb_put(&out->b, (const char *)pend, np)) { free(pend); return lrt_tok_oom(); }
            sl_end(out);
          } else {
            for (size_t k = 0; k < np; k++) {
              if (!sl_begin(out) || !lrt_tok_sb_put(&out->b, "\xEF\xBF\xBD", 3)) { free(pend); return lrt_tok_oom(); }
              sl_end(out);
            }
          }
          np = 0;
        }
        if (s) {
          if (!sl_begin(out) || !lrt_tok_sb_put(&out->b, s, n)) { free(pend); return lrt_tok_oom(); }
          sl_end(out);
        }
      }
      free(pend);
      return LRT_OK;
    }
    case DC_FUSE: {
      if (!sl_begin(out)) return lrt_tok_oom();
      for (size_t i = 0; i < in->n; i++) {
        const char *s = sl_str(in, i, &n);
        if (!lrt_tok_sb_put(&out->b, s, n)) return lrt_tok_oom();
      }
      sl_end(out);
      return LRT_OK;
    }
    case DC_STRIP: {
      for (size_t i = 0; i < in->n; i++) {
        const char *s = sl_str(in, i, &n);
        size_t a = 0, b = n;
        for (int64_t k = 0; k < d->start && a + d->a_len <= b && memcmp(s + a, d->a, d->a_len) == 0; k++) a += d->a_len;
        for (int64_t k = 0; k < d->stop && b >= a + d->a_len && memcmp(s + b - d->a_len, d->a, d->a_len) == 0; k++)
          b -= d->a_len;
        if (!sl_begin(out) || !lrt_tok_sb_put(&out->b, s + a, b - a)) return lrt_tok_oom();
        sl_end(out);
      }
      return LRT_OK;
    }
  }
  return lrt_err(LRT_ERR_INTERNAL, "unknown decoder step");
}

int32_t lrt_tok_decode(const lrt_tokenizer *t, const int32_t *ids, int64_t n, int32_t flags, char *text,
                       size_t capacity, size_t *text_len) {
  if (text_len) *text_len = 0;
  if (!t || !text_len || (!ids && n) || n < 0 || (!text && capacity))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_detokenize: NULL argument or negative count");
  if (flags & ~LRT_DETOKENIZE_SKIP_SPECIAL)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_detokenize: unknown flags 0x%x", (unsigned)flags);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_detokenize: token id %d is negative", (int)ids[i]);
  slist a = {0}, b = {0};
  int32_t st = LRT_OK;
  for (int64_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id >= t->n_ids || !t->assigned[id]) continue;
    if ((flags & LRT_DETOKENIZE_SKIP_SPECIAL) && t->special[id]) continue;
    if (!sl_begin(&a) || !lrt_tok_sb_put(&a.b, t->pool + t->off[id], t->off[id + 1] - t->off[id])) { st = lrt_tok_oom(); goto done; }
    sl_end(&a);
  }
  slist *cur = &a, *nxt = &b;
  sbuf res = {0};
  if (!t->has_decoder) {
    for (size_t i = 0; i < cur->n; i++) {
      size_t m;
      const char *s = sl_str(cur, i, &m);
      if ((i && !lrt_tok_sb_put(&res, " ", 1)) || !lrt_tok_sb_put(&res, s, m)) { free(res.p); st = lrt_tok_oom(); goto done; }
    }
  } else {
    for (int k = 0; k < t->n_dc; k++) {
      st = dc_apply(t, &t->dc[k], cur, nxt);
      if (st) goto done;
      slist *sw = cur; cur = nxt; nxt = sw;
    }
    for (size_t i = 0; i < cur->n; i++) {
      size_t m;
      const char *s = sl_str(cur, i, &m);
      if (!lrt_tok_sb_put(&res, s, m)) { free(res.p); st = lrt_tok_oom(); goto done; }
    }
  }
  /* steps without ByteLevel/ByteFallback keep token bytes as they are: make sure the
   * result is UTF-8 (the vocabulary is, so this only matters for odd chains) */
  *text_len = res.n;
  if (res.n > capacity) {
    if (capacity) memcpy(text, res.p, capacity);
    st = lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "lrt_detokenize: %zu bytes do not fit in capacity %zu", res.n, capacity);
  } else if (res.n) {
    memcpy(text, res.p, res.n);
  }
  free(res.p);
done:
  free(a.b.p); free(a.off); free(b.b.p); free(b.off);
  return st;
}

/* Bytes of each token alone, decoded by the decoder's per-token rules. */
int32_t lrt_tok_compute_token_bytes(lrt_tokenizer *t) {
  t->tb_off = (size_t *)calloc((size_t)t->n_ids + 1, sizeof(size_t));
  if (!t->tb_off) return lrt_tok_oom();
  sbuf pool = {0}, cur = {0}, nx = {0};
  int bytelevel = 0, fallback = 0;
  for (int k = 0; k < t->n_dc; k++) {
    if (t->dc[k].type == DC_BYTELEVEL) bytelevel = 1;
    if (t->dc[k].type == DC_BYTEFALLBACK) fallback = 1;
  }
  for (int32_t id = 0; id < t->n_ids; id++) {
    t->tb_off[id] = pool.n;
    size_t n = t->off[id + 1] - t->off[id];
    const char *s = t->pool + t->off[id];
    cur.n = 0;
    if (!lrt_tok_sb_put(&cur, s, n)) goto fail;
    for (int k = 0; k < t->n_dc; k++) {
      const dc_step *d = &t->dc[k];
      nx.n = 0;
      if (d->type == DC_REPLACE || d->type == DC_METASPACE) {
        char rep[4];
        const char *pa = d->a;
        size_t pl = d->a_len;
        const char *to = d->b;
        size_t tl = d->b_len;
        if (d->type == DC_METASPACE) { pl = (size_t)lrt_tok_u8_enc(d->repl, rep); pa = rep; to = " "; tl = 1; }
        size_t j = 0;
        while (j < cur.n) {
          if (pl && cur.n - j >= pl && memcmp(cur.p + j, pa, pl) == 0) { if (!lrt_tok_sb_put(&nx, to, tl)) goto fail; j += pl; }
          else { if (!lrt_tok_sb_put(&nx, cur.p + j, 1)) goto fail; j++; }
        }
      } else if (d->type == DC_BYTEFALLBACK) {
        uint8_t byte;
        if (parse_byte_token(cur.p, cur.n, &byte)) { if (!lrt_tok_sb_put(&nx, (const char *)&byte, 1)) goto fail; }
        else if (!lrt_tok_sb_put(&nx, cur.p, cur.n)) goto fail;
      } else if (d->type == DC_BYTELEVEL) {
        size_t j = 0;
        int ok = 1;
        while (j < cur.n) {
          int l;
          uint32_t cp = lrt_tok_u8_dec((const uint8_t *)cur.p, cur.n, j, &l);
          int b = cp < 324 ? t->bt.dec[cp] : -1;
          if (b < 0) { ok = 0; break; }
          char ch = (char)b;
          if (!lrt_tok_sb_put(&nx, &ch, 1)) goto fail;
          j += (size_t)l;
        }
        if (!ok) { nx.n = 0; if (!lrt_tok_sb_put(&nx, cur.p, cur.n)) goto fail; }
      } else {
        if (!lrt_tok_sb_put(&nx, cur.p, cur.n)) goto fail;
      }
      sbuf sw = cur; cur = nx; nx = sw;
    }
    (void)bytelevel; (void)fallback;
    if (!lrt_tok_sb_put(&pool, cur.p, cur.n)) goto fail;
  }
  t->tb_off[t->n_ids] = pool.n;
  t->tb_pool = pool.p ? pool.p : (char *)malloc(1);
  free(cur.p); free(nx.p);
  if (!t->tb_pool) return lrt_tok_oom();
  return LRT_OK;
fail:
  free(pool.p); free(cur.p); free(nx.p);
  return lrt_tok_oom();
}

int32_t lrt_tok_token_bytes(const lrt_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
  if (!t || !bytes || !len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_bytes: NULL argument");
  if (id < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_bytes: token id %d is negative", (int)id);
  if (id >= t->n_ids) { *bytes = ""; *len = 0; return LRT_OK; }
  *bytes = t->tb_pool + t->tb_off[id];
  *len = t->tb_off[id + 1] - t->tb_off[id];
  return LRT_OK;
}
