/* tok_encode.c -- lrt_tok_encode, the encode driver: the split on added tokens (pipeline
 * step 1, and again on the normalized ones in step 2), then normalizer, pre-tokenizer and
 * BPE on every remaining piece, and the post-processor's template around the result
 * (step 5). The encoding context lives for one call; the tokenizer is read-only. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- encoding context (per call; the tokenizer itself is read-only) -------------------- */

static void ctx_free(enc_ctx *c) {
  free(c->out);
  for (int i = 0; i < TOK_MAX_STEPS + 2; i++) {
    free(c->lv[i].cp); free(c->lv[i].coff); free(c->lv[i].seg); free(c->lv[i].buf.p);
  }
  free(c->sy); free(c->q); free(c->bg); free(c->norm.p); free(c->tmp.p); free(c->aseg); free(c->aseg2);
}

int lrt_tok_push_id(enc_ctx *c, int32_t id) {
  if (!lrt_tok_grow((void **)&c->out, &c->out_cap, c->n_out + 1, sizeof(int32_t))) return 0;
  c->out[c->n_out++] = id;
  return 1;
}

/* ---- added tokens ------------------------------------------------------------------------------ */

/* tokenizers' find_matches: leftmost-longest matches over all tokens of the set, then
 * per match the special / single_word checks and the lstrip / rstrip extension. Writes
 * (start, end, id or -1) triples covering s. */
static int64_t split_added(const added_set *set, int parse_special, const char *s, size_t n, size_t **seg,
                           size_t *cap) {
  size_t ns = 0, start_offset = 0, i = 0;
  const uint8_t *u = (const uint8_t *)s;
  while (set->n && i < n) {
    uint8_t b = u[i];
    const added_tok *best = NULL;
    for (uint32_t k = set->first[b]; k < set->first[b + 1]; k++) {
      const added_tok *a = &set->t[k];
      if (a->n <= n - i && (!best || a->n > best->n) && memcmp(s + i, a->s, a->n) == 0) best = a;
    }
    if (!best) { i++; continue; }
    size_t start = i, stop = i + best->n;
    i = stop;
    if (best->special && !parse_special) continue;
    if (best->single_word) {
      int start_space = 1, stop_space = 1;
      if (start > 0) {
        size_t q = start - 1;
        while (q > 0 && (u[q] & 0xC0) == 0x80) q--;
        int l;
        start_space = !lrt_tok_uc_word(lrt_tok_u8_dec(u, n, q, &l));
      }
      if (stop < n) {
        int l;
        stop_space = !lrt_tok_uc_word(lrt_tok_u8_dec(u, n, stop, &l));
      }
      if (!start_space || !stop_space) continue;
    }
    if (best->lstrip) {
      size_t q = start;
      while (q > 0) {
        size_t p0 = q - 1;
        while (p0 > 0 && (u[p0] & 0xC0) == 0x80) p0--;
        int l;
        if (!lrt_tok_uc_space(lrt_tok_u8_dec(u, n, p0, &l))) break;
        q = p0;
      }
      start = q > start_offset ? q : start_offset;
    }
    if (best->rstrip) {
      while (stop < n) {
        int l;
        if (!lrt_tok_uc_space(lrt_tok_u8_dec(u, n, stop, &l))) break;
        stop += (size_t)l;
      }
    }
    if (start_offset < start && !lrt_tok_seg_push(seg, cap, &ns, start_offset, start, (size_t)-1)) return -1;
    if (!lrt_tok_seg_push(seg, cap, &ns, start, stop, (size_t)best->id)) return -1;
    start_offset = stop;
  }
  if (start_offset < n && !lrt_tok_seg_push(seg, cap, &ns, start_offset, n, (size_t)-1)) return -1;
  return (int64_t)ns;
}

/* ---- encode ----------------------------------------------------------------------------------- */

static int32_t encode_text(enc_ctx *c, const char *text, size_t len, int parse_special) {
  const lrt_tokenizer *t = c->t;
  int64_t ns = split_added(&t->raw, parse_special, text, len, &c->aseg, &c->aseg_cap);
  if (ns < 0) return lrt_tok_oom();
  for (int64_t k = 0; k < ns; k++) {
    size_t a = c->aseg[k * 3], b = c->aseg[k * 3 + 1], id = c->aseg[k * 3 + 2];
    if (id != (size_t)-1) {
      if (!lrt_tok_push_id(c, (int32_t)id)) return lrt_tok_oom();
      continue;
    }
    if (b <= a) continue;
    const char *s = text + a;
    size_t n = b - a;
    if (t->n_nm) {
      int32_t st = lrt_tok_normalize(t, s, n, &c->norm, &c->tmp);
      if (st) return st;
      s = c->norm.p;
      n = c->norm.n;
    }
    if (n == 0) continue;
    int64_t ns2 = split_added(&t->norm, parse_special, s, n, &c->aseg2, &c->aseg2_cap);
    if (ns2 < 0) return lrt_tok_oom();
    for (int64_t q = 0; q < ns2; q++) {
      size_t a2 = c->aseg2[q * 3], b2 = c->aseg2[q * 3 + 1], id2 = c->aseg2[q * 3 + 2];
      if (id2 != (size_t)-1) {
        if (!lrt_tok_push_id(c, (int32_t)id2)) return lrt_tok_oom();
        continue;
      }
      int32_t st = lrt_tok_pretok(c, 0, s + a2, b2 - a2, a == 0 && a2 == 0);
      if (st) return st;
    }
  }
  return LRT_OK;
}

int32_t lrt_tok_encode(const lrt_tokenizer *t, const char *text, size_t len, int32_t flags, int32_t *ids,
                       int64_t capacity, int64_t *n_ids) {
  if (n_ids) *n_ids = 0;
  if (!t || !n_ids || (!text && len) || capacity < 0 || (!ids && capacity > 0))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_tokenize: NULL argument or negative capacity");
  if (flags & ~(LRT_TOKENIZE_ADD_SPECIAL | LRT_TOKENIZE_PARSE_SPECIAL))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_tokenize: unknown flags 0x%x", (unsigned)flags);
  if (len && !lrt_utf8_valid(text, len))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_tokenize: the text is not valid UTF-8");
  enc_ctx c;
  memset(&c, 0, sizeof c);
  c.t = t;
  int32_t st = LRT_OK;
  size_t tmpl_start = 0;
  int add = (flags & LRT_TOKENIZE_ADD_SPECIAL) && t->has_post;
  if (add) {
    for (tmpl_start = 0; tmpl_start < t->n_post && t->post[tmpl_start] >= 0; tmpl_start++)
      if (!lrt_tok_push_id(&c, t->post[tmpl_start])) { st = lrt_tok_oom(); goto done; }
  }
  if (len) st = encode_text(&c, text, len, (flags & LRT_TOKENIZE_PARSE_SPECIAL) != 0);
  if (st) goto done;
  if (add) {
    for (size_t i = tmpl_start + 1; i < t->n_post; i++)
      if (t->post[i] >= 0 && !lrt_tok_push_id(&c, t->post[i])) { st = lrt_tok_oom(); goto done; }
  }
  *n_ids = (int64_t)c.n_out;
  if ((int64_t)c.n_out > capacity) {
    if (capacity > 0) memcpy(ids, c.out, (size_t)capacity * sizeof(int32_t));
    st = lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "lrt_tokenize: %zu ids do not fit in capacity %lld", c.n_out,
                 (long long)capacity);
    goto done;
  }
  if (c.n_out) memcpy(ids, c.out, c.n_out * sizeof(int32_t));
done:
  ctx_free(&c);
  return st;
}
