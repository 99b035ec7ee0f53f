/* tok_build.c -- what both loaders (tok_load_json.c, tok_load_gguf.c) share: adding
 * pipeline steps, and finishing the tokenizer from the builder (vocabulary and merge
 * tables, unknown and byte tokens, added tokens replayed as tokenizers adds them, id ->
 * text for decoding); freeing it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- builder: what both loaders fill before finishing ---------------------------------- */

void lrt_tok_free(lrt_tokenizer *t) {
  if (!t) return;
  free(t->off); free(t->assigned); free(t->special); free(t->pool);
  free(t->vh); free(t->voff); free(t->vlen); free(t->vpool);
  free(t->mk); free(t->mrank); free(t->mid);
  for (int i = 0; i < t->n_nm; i++) { free(t->nm[i].a); free(t->nm[i].b); }
  for (int i = 0; i < t->n_pt; i++) free(t->pt[i].lit);
  for (int i = 0; i < t->n_dc; i++) { free(t->dc[i].a); free(t->dc[i].b); }
  free(t->post);
  free(t->raw.t); free(t->norm.t); free(t->added_pool);
  free(t->tb_off); free(t->tb_pool);
  free(t->ac_pool); free(t->ac); free(t->score);
  free(t);
}

int64_t lrt_tok_size(const lrt_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t lrt_tok_add_pt(lrt_tokenizer *t, const char *what, pt_step **out) {
  if (t->n_pt >= TOK_MAX_STEPS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", what, TOK_MAX_STEPS);
  *out = &t->pt[t->n_pt++];
  memset(*out, 0, sizeof **out);
  return LRT_OK;
}

/* Resolve a token string to an id for the post-processor (added tokens or vocabulary). */
int32_t lrt_tok_post_push(lrt_tokenizer *t, size_t *cap, int32_t id) {
  if (!lrt_tok_grow((void **)&t->post, cap, t->n_post + 1, sizeof(int32_t))) return lrt_tok_oom();
  t->post[t->n_post++] = id;
  return LRT_OK;
}

static int cmp_added(const void *a, const void *b) {
  const added_tok *x = (const added_tok *)a, *y = (const added_tok *)b;
  uint8_t cx = (uint8_t)x->s[0], cy = (uint8_t)y->s[0];
  if (cx != cy) return cx < cy ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* ---- vocabulary texts (lrt_token_text / lrt_token_id) ---------------------------------- */

static int cmp_content(const lrt_tokenizer *t, const added_content *x, const char *s, size_t n) {
  size_t m = x->n < n ? x->n : n;
  int c = m ? memcmp(t->ac_pool + x->off, s, m) : 0;
  if (c) return c;
  return x->n < n ? -1 : x->n > n;
}

/* A stable merge sort of indices into t->ac by content. */
static void sort_idx(uint32_t *idx, uint32_t *tmp, size_t n, const lrt_tokenizer *t) {
  if (n < 2) return;
  size_t h = n / 2;
  sort_idx(idx, tmp, h, t);
  sort_idx(idx + h, tmp, n - h, t);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n) {
    const added_content *a = &t->ac[idx[i]], *b = &t->ac[idx[j]];
    int le = cmp_content(t, a, t->ac_pool + b->off, b->n) <= 0;
    tmp[k++] = le ? idx[i++] : idx[j++];
  }
  while (i < h) tmp[k++] = idx[i++];
  while (j < n) tmp[k++] = idx[j++];
  memcpy(idx, tmp, n * sizeof *idx);
}

int lrt_tok_id_text(const lrt_tokenizer *t, int32_t id, const char **s, size_t *n) {
  if (!t || id < 0 || id >= t->n_ids || !t->assigned[id]) return 0;
  *s = t->pool + t->off[id];
  *n = t->off[id + 1] - t->off[id];
  return 1;
}

int32_t lrt_tok_text_id(const lrt_tokenizer *t, const char *s, size_t n) {
  if (!t) return -1;
  size_t lo = 0, hi = t->n_ac;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp_content(t, &t->ac[mid], s, n) < 0) lo = mid + 1; else hi = mid;
  }
  if (lo < t->n_ac && cmp_content(t, &t->ac[lo], s, n) == 0) return t->ac[lo].id;
  return lrt_tok_vocab_find(t, s, n);
}

/* The added tokens' raw contents (tokenizers' added_tokens_map): one entry per distinct
 * content with its id, sorted by content. */
static int32_t build_contents(lrt_tokenizer *t, const builder *b, const int32_t *aid, const size_t *group) {
  size_t na = b->n_added, bytes = 0, k = 0;
  for (size_t i = 0; i < na; i++)
    if (aid[i] >= 0 && group[i] == i) bytes += b->added[i].n;
  t->ac_pool = (char *)malloc(bytes + 1);
  t->ac = (added_content *)calloc(na + 1, sizeof(added_content));
  uint32_t *idx = (uint32_t *)calloc(na + 1, sizeof(uint32_t)), *tmp = (uint32_t *)calloc(na + 1, sizeof(uint32_t));
  if (!t->ac_pool || !t->ac || !idx || !tmp) { free(idx); free(tmp); return lrt_tok_oom(); }
  size_t pos = 0;
  for (size_t i = 0; i < na; i++) {
    if (aid[i] < 0 || group[i] != i) continue; /* ignored, or content seen before (same id) */
    memcpy(t->ac_pool + pos, b->added[i].s, b->added[i].n);
    t->ac[k].off = pos;
    t->ac[k].n = b->added[i].n;
    t->ac[k].id = aid[i];
    pos += b->added[i].n;
    k++;
  }
  t->n_ac = k;
  for (size_t i = 0; i < k; i++) idx[i] = (uint32_t)i;
  sort_idx(idx, tmp, k, t);
  added_content *sorted = (added_content *)calloc(k + 1, sizeof(added_content));
  if (!sorted) { free(idx); free(tmp); return lrt_tok_oom(); }
  for (size_t i = 0; i < k; i++) sorted[i] = t->ac[idx[i]];
  free(t->ac);
  t->ac = sorted;
  free(idx);
  free(tmp);
  return LRT_OK;
}

static void index_added(added_set *set) {
  if (set->n > 1) qsort(set->t, set->n, sizeof *set->t, cmp_added); /* set->t may be NULL */
  size_t k = 0;
  for (int b = 0; b <= 256; b++) {
    while (k < set->n && (uint8_t)set->t[k].s[0] < b) k++;
    set->first[b] = (uint32_t)k;
  }
}

/* Build vocab/merges/added structures from the builder; pipeline steps are already set. */
int32_t lrt_tok_finish(lrt_tokenizer *t, builder *b) {
  const char *what = b->what;
  int32_t max_id = -1;
  size_t vbytes = 0;
  for (size_t i = 0; i < b->n_vocab; i++) {
    if (b->vocab[i].id < 0 || b->vocab[i].id >= TOK_MAX_VOCAB)
      return lrt_err(LRT_ERR_FORMAT, "%s: token id %d of %.40s is out of range [0, %d)", what,
                     (int)b->vocab[i].id, b->vocab[i].s, TOK_MAX_VOCAB);
    if (b->vocab[i].id > max_id) max_id = b->vocab[i].id;
    vbytes += b->vocab[i].n;
  }
  int32_t n_model = max_id + 1;
  /* model vocab storage and hash */
  t->voff = (size_t *)calloc((size_t)n_model + 1, sizeof(size_t));
  t->vlen = (uint32_t *)calloc((size_t)n_model + 1, sizeof(uint32_t));
  t->vpool = (char *)malloc(vbytes + 1);
  size_t cap = 16;
  while (cap < 2 * b->n_vocab + 16) cap *= 2;
  t->vh = (int32_t *)malloc(cap * sizeof(int32_t));
  uint8_t *seen = (uint8_t *)calloc((size_t)n_model + 1, 1);
  if (!t->voff || !t->vlen || !t->vpool || !t->vh || !seen) { free(seen); return lrt_tok_oom(); }
  t->vh_cap = cap;
  memset(t->vh, 0xFF, cap * sizeof(int32_t));
  size_t pos = 0;
  for (size_t i = 0; i < b->n_vocab; i++) {
    const vocab_entry *e = &b->vocab[i];
    if (seen[e->id]) {
      free(seen);
      return lrt_err(LRT_ERR_FORMAT, "%s: token id %d is used twice in the vocabulary", what, (int)e->id);
    }
    if (e->n > UINT32_MAX) { free(seen); return lrt_err(LRT_ERR_FORMAT, "%s: token too long", what); }
    if (lrt_tok_vocab_find(t, e->s, e->n) >= 0) {
      free(seen);
      return lrt_err(LRT_ERR_FORMAT, "%s: duplicate token %.60s (it appears twice in the vocabulary)", what, e->s);
    }
    seen[e->id] = 1;
    memcpy(t->vpool + pos, e->s, e->n);
    t->voff[e->id] = pos;
    t->vlen[e->id] = (uint32_t)e->n;
    pos += e->n;
    size_t j = (size_t)lrt_tok_hash_bytes(e->s, e->n) & (cap - 1);
    while (t->vh[j] >= 0) j = (j + 1) & (cap - 1);
    t->vh[j] = e->id;
  }
  /* merges */
  if (b->n_merges) {
    size_t mc = 16;
    while (mc < 2 * b->n_merges + 16) mc *= 2;
    t->mk = (uint64_t *)malloc(mc * sizeof(uint64_t));
    t->mrank = (int32_t *)malloc(mc * sizeof(int32_t));
    t->mid = (int32_t *)malloc(mc * sizeof(int32_t));
    if (!t->mk || !t->mrank || !t->mid) { free(seen); return lrt_tok_oom(); }
    t->mh_cap = mc;
    memset(t->mrank, 0xFF, mc * sizeof(int32_t));
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t i = 0; i < b->n_merges; i++) {
      const merge_entry *e = &b->merges[i];
      int32_t ia = lrt_tok_vocab_find(t, e->a, e->na), ib = lrt_tok_vocab_find(t, e->b, e->nb);
      if (!lrt_tok_grow((void **)&cat, &cat_cap, e->na + e->nb + 1, 1)) { free(cat); free(seen); return lrt_tok_oom(); }
      memcpy(cat, e->a, e->na);
      memcpy(cat + e->na, e->b, e->nb);
      int32_t ic = lrt_tok_vocab_find(t, cat, e->na + e->nb);
      if (ia < 0 || ib < 0 || ic < 0) {
        const char *which = ia < 0 ? e->a : ib < 0 ? e->b : "their concatenation";
        int wl = ia < 0 ? (int)e->na : ib < 0 ? (int)e->nb : 19;
        free(cat); free(seen);
        return lrt_err(LRT_ERR_FORMAT, "%s: merge %zu uses %.*s, which is not in the vocabulary", what, i,
                       wl > 60 ? 60 : wl, which);
      }
      uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
      size_t j = (size_t)lrt_tok_hash_pair(key) & (mc - 1);
      while (t->mrank[j] >= 0 && t->mk[j] != key) j = (j + 1) & (mc - 1);
      if (t->mrank[j] >= 0 && b->merges_keep_first) continue;
      t->mk[j] = key;
      t->mrank[j] = (int32_t)i;
      t->mid[j] = ic;
    }
    free(cat);
  }
  /* unknown token */
  t->unk = -1;
  if (b->unk_drop) t->unk = -2;
  else if (b->unk) {
    t->unk = lrt_tok_vocab_find(t, b->unk, b->unk_len);
    if (t->unk < 0) {
      free(seen);
      return lrt_err(LRT_ERR_FORMAT, "%s: the unknown token %.60s is not in the vocabulary", what, b->unk);
    }
  }
  for (int i = 0; i < 256; i++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", i);
    t->byte_id[i] = lrt_tok_vocab_find(t, name, 6);
  }
  /* Added tokens, replaying tokenizers' AddedVocabulary::add_tokens one token at a time:
   *  - empty contents are ignored; an exact duplicate (all flags equal) of the token that
   *    currently owns its id is ignored;
   *  - the id is the one of the content (an earlier added token, else the vocabulary), else
   *    the next free id after the model vocabulary;
   *  - the last token given for an id owns it: its flags apply when matching, its text
   *    (normalized when its `normalized` flag is set) is what decoding shows;
   *  - the matching patterns are the special tokens (first occurrence of each content) and
   *    every token whose content was not special when it was added, each matched as
   *    normalized or raw by its own flag;
   *  - "special" (skipped when decoding, not matched without PARSE_SPECIAL) is decided by
   *    content: the contents of the special tokens. */
  size_t na = b->n_added;
  int32_t *aid = (int32_t *)malloc((na + 1) * sizeof(int32_t));
  int32_t *owner = NULL;     /* id -> index of the owning entry, -1 */
  uint8_t *in_trie = (uint8_t *)calloc(na + 1, 1);
  uint8_t *spec = (uint8_t *)calloc(na + 1, 1); /* entry content is a special content */
  if (!aid || !in_trie || !spec) { free(aid); free(in_trie); free(spec); free(seen); return lrt_tok_oom(); }
  int32_t max_added = -1;
  size_t model_size = b->n_vocab;
#define SAME_TEXT(x, y) ((x)->n == (y)->n && memcmp((x)->s, (y)->s, (x)->n) == 0)
  /* group[i]: first entry with the same content; any_special[g]: a special entry in group g;
   * first_special[g]: the first one (na when none) */
  size_t *group = (size_t *)malloc((na + 1) * sizeof(size_t));
  size_t *first_special = (size_t *)malloc((na + 1) * sizeof(size_t));
  size_t hcap = 16;
  while (hcap < 2 * na + 16) hcap *= 2;
  size_t *hidx = (size_t *)malloc(hcap * sizeof(size_t));
  if (!group || !first_special || !hidx) {
    free(group); free(first_special); free(hidx); free(aid); free(in_trie); free(spec); free(seen);
    return lrt_tok_oom();
  }
  for (size_t j = 0; j < hcap; j++) hidx[j] = SIZE_MAX;
  for (size_t i = 0; i < na; i++) {
    const added_entry *e = &b->added[i];
    size_t j = (size_t)lrt_tok_hash_bytes(e->s, e->n) & (hcap - 1);
    while (hidx[j] != SIZE_MAX && !SAME_TEXT(&b->added[hidx[j]], e)) j = (j + 1) & (hcap - 1);
    if (hidx[j] == SIZE_MAX) hidx[j] = i;
    group[i] = hidx[j];
    first_special[i] = na;
    if (e->special && first_special[group[i]] == na) first_special[group[i]] = i;
  }
  for (size_t i = 0; i < na; i++) {
    const added_entry *e = &b->added[i];
    aid[i] = -1;
    if (!e->n) continue;
    int32_t id = -1;
    if (group[i] < i) id = aid[group[i]];
    if (id < 0) id = lrt_tok_vocab_find(t, e->s, e->n);
    if (id < 0) {
      if (max_added < 0) id = (int32_t)model_size;
      else id = ((size_t)max_added >= model_size || model_size == 0) ? max_added + 1 : (int32_t)model_size;
    }
    if (id >= TOK_MAX_VOCAB) {
      free(aid); free(in_trie); free(spec); free(seen); free(group); free(first_special); free(hidx);
      return lrt_err(LRT_ERR_FORMAT, "%s: too many added tokens", what);
    }
    aid[i] = id;
    if (id > max_added) max_added = id;
  }
  t->n_ids = n_model > max_added + 1 ? n_model : max_added + 1;
  free(seen);
  owner = (int32_t *)malloc(((size_t)t->n_ids + 1) * sizeof(int32_t));
  if (!owner) { free(aid); free(in_trie); free(spec); free(group); free(first_special); free(hidx); return lrt_tok_oom(); }
  for (int32_t id = 0; id <= t->n_ids; id++) owner[id] = -1;
  for (size_t i = 0; i < na; i++) {
    const added_entry *e = &b->added[i];
    if (aid[i] < 0) continue;
    int32_t o = owner[aid[i]];
    if (o >= 0) {
      const added_entry *f = &b->added[o];
      if (SAME_TEXT(f, e) && f->special == e->special && f->lstrip == e->lstrip && f->rstrip == e->rstrip &&
          f->single_word == e->single_word && f->normalized == e->normalized) {
        aid[i] = -1; /* exact duplicate: ignored */
        continue;
      }
    }
    int was_special = first_special[group[i]] < i; /* is the content already a special content? */
    if (e->special && !was_special) in_trie[i] = 1;  /* first special occurrence */
    if (!e->special && !was_special) in_trie[i] = 1; /* a classic added token */
    owner[aid[i]] = (int32_t)i;
  }
  for (size_t i = 0; i < na; i++) spec[i] = aid[i] >= 0 && first_special[group[i]] < na;
  /* normalized texts of the entries with the normalized flag, into one pool */
  sbuf normed = {0}, tmp = {0}, all = {0};
  size_t *noff = (size_t *)calloc(na + 1, sizeof(size_t));
  int32_t st = LRT_OK;
  if (!noff) st = lrt_tok_oom();
  for (size_t i = 0; i < na && !st; i++) {
    const added_entry *e = &b->added[i];
    noff[i] = all.n;
    if (aid[i] < 0) continue;
    if (e->normalized) {
      normed.n = 0;
      st = lrt_tok_normalize(t, e->s, e->n, &normed, &tmp);
      if (!st && !lrt_tok_sb_put(&all, normed.p, normed.n)) st = lrt_tok_oom();
    } else if (!lrt_tok_sb_put(&all, e->s, e->n)) {
      st = lrt_tok_oom();
    }
  }
  if (noff) noff[na] = all.n;
  free(normed.p);
  free(tmp.p);
  t->added_pool = all.p ? all.p : (char *)malloc(1);
  if (!st && !t->added_pool) st = lrt_tok_oom();
  size_t n_raw = 0, n_norm = 0;
  for (size_t i = 0; i < na; i++)
    if (in_trie[i]) { if (b->added[i].normalized) n_norm++; else n_raw++; }
  t->raw.t = (added_tok *)calloc(n_raw + 1, sizeof(added_tok));
  t->norm.t = (added_tok *)calloc(n_norm + 1, sizeof(added_tok));
  if (!st && (!t->raw.t || !t->norm.t)) st = lrt_tok_oom();
  for (size_t i = 0; i < na && !st; i++) {
    if (!in_trie[i] || noff[i + 1] == noff[i]) continue;
    const added_entry *e = &b->added[i];
    const added_entry *o = &b->added[owner[aid[i]]];
    added_set *set = e->normalized ? &t->norm : &t->raw;
    added_tok *a = &set->t[set->n++];
    a->s = t->added_pool + noff[i];
    a->n = noff[i + 1] - noff[i];
    a->id = aid[i];
    a->special = spec[i];
    a->lstrip = o->lstrip;
    a->rstrip = o->rstrip;
    a->single_word = o->single_word;
  }
  /* id -> text for decoding: the owning added token's text wins over the vocabulary */
  if (!st) {
    t->off = (size_t *)calloc((size_t)t->n_ids + 1, sizeof(size_t));
    t->assigned = (uint8_t *)calloc((size_t)t->n_ids + 1, 1);
    t->special = (uint8_t *)calloc((size_t)t->n_ids + 1, 1);
    t->pool = (char *)malloc(vbytes + all.n + 1);
    if (!t->off || !t->assigned || !t->special || !t->pool) st = lrt_tok_oom();
  }
  if (!st) {
    size_t pos2 = 0;
    for (int32_t id = 0; id < t->n_ids; id++) {
      t->off[id] = pos2;
      const char *src = NULL;
      size_t srcn = 0;
      if (owner[id] >= 0) {
        int32_t i = owner[id];
        src = t->added_pool + noff[i];
        srcn = noff[i + 1] - noff[i];
        t->assigned[id] = 2;
        /* decoding skips special tokens by their text, so a special token shown in
         * normalized form is not skipped (as in tokenizers) */
        size_t j = (size_t)lrt_tok_hash_bytes(src, srcn) & (hcap - 1);
        while (hidx[j] != SIZE_MAX) {
          const added_entry *g = &b->added[hidx[j]];
          if (g->n == srcn && memcmp(g->s, src, srcn) == 0) {
            t->special[id] = first_special[hidx[j]] < na;
            break;
          }
          j = (j + 1) & (hcap - 1);
        }
      } else if (id < n_model && (t->vlen[id] || lrt_tok_vocab_find(t, t->vpool + t->voff[id], 0) == id)) {
        src = t->vpool + t->voff[id];
        srcn = t->vlen[id];
        t->assigned[id] = 1;
      }
      if (srcn) memcpy(t->pool + pos2, src, srcn);
      pos2 += srcn;
    }
    t->off[t->n_ids] = pos2;
    t->pool_len = pos2;
  }
#undef SAME_TEXT
  if (!st) st = build_contents(t, b, aid, group);
  free(noff);
  free(aid);
  free(owner);
  free(in_trie);
  free(spec);
  free(group);
  free(first_special);
  free(hidx);
  if (st) return st;
  index_added(&t->raw);
  index_added(&t->norm);
  lrt_tok_byte_tables_init(&t->bt);
  return lrt_tok_compute_token_bytes(t);
}
