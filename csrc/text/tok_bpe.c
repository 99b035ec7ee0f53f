/* tok_bpe.c -- the BPE model (pipeline step 4): lookups in the vocabulary and merge hash
 * tables that tok_build.c fills, and the merge loop over the characters of one
 * pre-tokenized piece. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- hashing ------------------------------------------------------------------------------ */

uint64_t lrt_tok_hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
  return h ^ (h >> 29);
}

uint64_t lrt_tok_hash_pair(uint64_t k) {
  k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ULL; k ^= k >> 33;
  return k;
}

int32_t lrt_tok_vocab_find(const lrt_tokenizer *t, const char *s, size_t n) {
  if (!t->vh_cap) return -1;
  size_t mask = t->vh_cap - 1, i = (size_t)lrt_tok_hash_bytes(s, n) & mask;
  for (;;) {
    int32_t id = t->vh[i];
    if (id < 0) return -1;
    if (t->vlen[id] == n && memcmp(t->vpool + t->voff[id], s, n) == 0) return id;
    i = (i + 1) & mask;
  }
}

static int merge_find(const lrt_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
  if (!t->mh_cap || a < 0 || b < 0) return 0;
  uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  size_t mask = t->mh_cap - 1, i = (size_t)lrt_tok_hash_pair(key) & mask;
  for (;;) {
    if (t->mrank[i] < 0) return 0;
    if (t->mk[i] == key) { *rank = t->mrank[i]; *id = t->mid[i]; return 1; }
    i = (i + 1) & mask;
  }
}

/* ---- BPE ----------------------------------------------------------------------------------- */

static int mq_less(const mq *a, const mq *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int mq_push(enc_ctx *c, size_t *n, int32_t rank, int32_t pos, int32_t id) {
  if (!lrt_tok_grow((void **)&c->q, &c->q_cap, *n + 1, sizeof(mq))) return 0;
  mq *q = c->q;
  size_t i = (*n)++;
  mq v = {rank, pos, id};
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!mq_less(&v, &q[p])) break;
    q[i] = q[p];
    i = p;
  }
  q[i] = v;
  return 1;
}

static mq mq_pop(enc_ctx *c, size_t *n) {
  mq *q = c->q;
  mq top = q[0], v = q[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const mq *best = &v;
    if (l < *n && mq_less(&q[l], best)) { m = l; best = &q[l]; }
    if (r < *n && mq_less(&q[r], best)) m = r;
    if (m == i) break;
    q[i] = q[m];
    i = m;
  }
  if (*n) q[i] = v;
  return top;
}

static int add_sym(enc_ctx *c, size_t *ns, int32_t id, int32_t len) {
  if (*ns >= INT32_MAX - 1 || !lrt_tok_grow((void **)&c->sy, &c->sy_cap, *ns + 1, sizeof(sym))) return 0;
  sym *s = &c->sy[*ns];
  s->id = id;
  s->len = len;
  s->prev = (int32_t)*ns - 1;
  s->next = (int32_t)*ns + 1;
  (*ns)++;
  return 1;
}

/* ---- SentencePiece by score (GGUF "llama" vocabularies) ------------------------------------

   llama.cpp's rule, read from its llm_tokenizer_spm: every UTF-8 character is a symbol; the
   bigrams of adjacent symbols whose concatenated text is a vocabulary entry wait in a queue,
   highest entry score first and leftmost first on equal scores; a popped bigram whose sides
   changed since it was queued is stale (its byte size no longer matches) and skipped;
   merging queues the new symbol's bigrams with its neighbours. A final symbol is its
   vocabulary entry; a character that never merged and is not in the vocabulary becomes
   its bytes' <0xNN> tokens (or the unknown token, as the ranked BPE does). Symbols hold
   byte offsets (sym.id = start) into the piece, so a bigram's text is contiguous. */

static int bg_less(const bigram *a, const bigram *b) { /* a comes out before b */
  return a->score != b->score ? a->score > b->score : a->left < b->left;
}

static int bg_push(enc_ctx *c, size_t *n, const bigram *v) {
  if (!lrt_tok_grow((void **)&c->bg, &c->bg_cap, *n + 1, sizeof(bigram))) return 0;
  bigram *q = c->bg;
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!bg_less(v, &q[p])) break;
    q[i] = q[p];
    i = p;
  }
  q[i] = *v;
  return 1;
}

static bigram bg_pop(enc_ctx *c, size_t *n) {
  bigram *q = c->bg;
  bigram top = q[0], v = q[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const bigram *best = &v;
    if (l < *n && bg_less(&q[l], best)) { m = l; best = &q[l]; }
    if (r < *n && bg_less(&q[r], best)) m = r;
    if (m == i) break;
    q[i] = q[m];
    i = m;
  }
  if (*n) q[i] = v;
  return top;
}

static int spm_try(enc_ctx *c, size_t *nb, const char *s, int32_t left, int32_t right) {
  if (left < 0 || right < 0) return 1;
  const sym *a = &c->sy[left], *b = &c->sy[right];
  int32_t id = lrt_tok_vocab_find(c->t, s + a->id, (size_t)a->len + (size_t)b->len);
  if (id < 0) return 1;
  bigram v = {c->t->score[id], left, right, a->len + b->len};
  return bg_push(c, nb, &v);
}

/* Ids of one character that is not a vocabulary entry (byte fallback, else unknown). */
static int spm_unknown(enc_ctx *c, const uint8_t *u, int32_t l, int *has_unk) {
  const lrt_tokenizer *t = c->t;
  if (t->byte_fallback) {
    int ok = 1;
    for (int32_t k = 0; k < l; k++) ok &= t->byte_id[u[k]] >= 0;
    if (ok) {
      if (*has_unk && !lrt_tok_push_id(c, t->unk)) return 0;
      *has_unk = 0;
      for (int32_t k = 0; k < l; k++) if (!lrt_tok_push_id(c, t->byte_id[u[k]])) return 0;
      return 1;
    }
  }
  if (t->unk < 0) return 1; /* no unknown token: the character is dropped */
  if (*has_unk && !t->fuse_unk && !lrt_tok_push_id(c, t->unk)) return 0;
  *has_unk = 1;
  return 1;
}

static int32_t spm_word(enc_ctx *c, const char *s, size_t n) {
  if (n >= (size_t)INT32_MAX) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_tokenize: a text piece is too long");
  const uint8_t *u = (const uint8_t *)s;
  size_t ns = 0, nb = 0;
  for (size_t i = 0; i < n;) {
    int l;
    lrt_tok_u8_dec(u, n, i, &l);
    if (!add_sym(c, &ns, (int32_t)i, l)) return lrt_tok_oom();
    i += (size_t)l;
  }
  sym *sy = c->sy;
  sy[ns - 1].next = -1;
  for (size_t i = 1; i < ns; i++)
    if (!spm_try(c, &nb, s, (int32_t)i - 1, (int32_t)i)) return lrt_tok_oom();
  while (nb) {
    bigram top = bg_pop(c, &nb);
    sym *a = &sy[top.left], *b = &sy[top.right];
    if (a->len == 0 || b->len == 0 || a->len + b->len != top.size) continue; /* stale */
    a->len += b->len;
    b->len = 0;
    a->next = b->next;
    if (a->next >= 0) sy[a->next].prev = top.left;
    if (!spm_try(c, &nb, s, a->prev, top.left) || !spm_try(c, &nb, s, top.left, a->next)) return lrt_tok_oom();
  }
  int has_unk = 0;
  for (int32_t i = 0; i >= 0; i = sy[i].next) {
    int32_t id = lrt_tok_vocab_find(c->t, s + sy[i].id, (size_t)sy[i].len);
    if (id >= 0) {
      if (has_unk && !lrt_tok_push_id(c, c->t->unk)) return lrt_tok_oom();
      has_unk = 0;
      if (!lrt_tok_push_id(c, id)) return lrt_tok_oom();
    } else if (!spm_unknown(c, u + sy[i].id, sy[i].len, &has_unk)) {
      return lrt_tok_oom();
    }
  }
  if (has_unk && !lrt_tok_push_id(c, c->t->unk)) return lrt_tok_oom();
  return LRT_OK;
}

/* ---- the ranked BPE of tokenizers ---------------------------------------------------------- */

int32_t lrt_tok_bpe_word(enc_ctx *c, const char *s, size_t n) {
  const lrt_tokenizer *t = c->t;
  if (n == 0) return LRT_OK;
  if (t->spm) return spm_word(c, s, n);
  if (t->ignore_merges) {
    int32_t id = lrt_tok_vocab_find(t, s, n);
    if (id >= 0) return lrt_tok_push_id(c, id) ? LRT_OK : lrt_tok_oom();
  }
  size_t ns = 0;
  int has_unk = 0;
  int32_t unk_len = 0;
  const uint8_t *u = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    int l;
    lrt_tok_u8_dec(u, n, i, &l);
    int32_t id = lrt_tok_vocab_find(t, s + i, (size_t)l);
    if (id >= 0) {
      if (has_unk) { if (!add_sym(c, &ns, t->unk, unk_len)) return lrt_tok_oom(); has_unk = 0; }
      if (!add_sym(c, &ns, id, l)) return lrt_tok_oom();
    } else {
      int done = 0;
      if (t->byte_fallback) {
        int ok = 1;
        for (int k = 0; k < l; k++) if (t->byte_id[u[i + k]] < 0) ok = 0;
        if (ok) {
          for (int k = 0; k < l; k++) if (!add_sym(c, &ns, t->byte_id[u[i + k]], 1)) return lrt_tok_oom();
          done = 1;
        }
      }
      if (!done && t->unk != -1) {
        if (has_unk && t->fuse_unk) unk_len += l;
        else {
          if (has_unk && !add_sym(c, &ns, t->unk, unk_len)) return lrt_tok_oom();
          has_unk = 1;
          unk_len = l;
        }
      }
    }
    i += (size_t)l;
  }
  if (has_unk && !add_sym(c, &ns, t->unk, unk_len)) return lrt_tok_oom();
  if (ns == 0) return LRT_OK;
  sym *sy = c->sy;
  sy[ns - 1].next = -1;
  size_t nq = 0;
  int32_t rank, nid;
  for (size_t i = 0; i + 1 < ns; i++)
    if (merge_find(t, sy[i].id, sy[i + 1].id, &rank, &nid) && !mq_push(c, &nq, rank, (int32_t)i, nid)) return lrt_tok_oom();
  while (nq) {
    mq top = mq_pop(c, &nq);
    sym *a = &sy[top.pos];
    if (a->len == 0 || a->next < 0) continue;
    int32_t nx = a->next;
    if (!merge_find(t, a->id, sy[nx].id, &rank, &nid) || nid != top.id) continue;
    a->id = top.id;
    a->len += sy[nx].len;
    a->next = sy[nx].next;
    sy[nx].len = 0;
    if (a->next >= 0) sy[a->next].prev = top.pos;
    if (a->prev >= 0 && merge_find(t, sy[a->prev].id, a->id, &rank, &nid) &&
        !mq_push(c, &nq, rank, a->prev, nid))
      return lrt_tok_oom();
    if (a->next >= 0 && merge_find(t, a->id, sy[a->next].id, &rank, &nid) && !mq_push(c, &nq, rank, top.pos, nid))
      return lrt_tok_oom();
  }
  for (int32_t i = 0; i >= 0; i = sy[i].next)
    if (sy[i].id >= 0 && !lrt_tok_push_id(c, sy[i].id)) return lrt_tok_oom();
  return LRT_OK;
}
