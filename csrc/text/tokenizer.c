/* tokenizer.c -- text <-> token ids in C, agreeing with HuggingFace `tokenizers`.
 *
 * One engine runs the pipeline of a HuggingFace tokenizer.json:
 *
 *   1. added tokens: the text is split on added tokens whose `normalized` flag is false
 *      (leftmost-longest, like tokenizers' Aho-Corasick; single_word / lstrip / rstrip
 *      applied exactly as tokenizers does, special ones skipped unless
 *      LRT_TOKENIZE_PARSE_SPECIAL);
 *   2. normalizer (Sequence, Prepend, Replace with a literal pattern, NFC, NFD) on each
 *      remaining piece, then a split on the `normalized` added tokens;
 *   3. pre-tokenizer steps (Sequence, Split with the known GPT-2 / Llama 3 / Qwen2 / digit
 *      expressions or a literal, ByteLevel, Metaspace, Digits), each on every piece of the
 *      previous step; empty pieces are dropped after every step as tokenizers does;
 *   4. the BPE model on every piece: characters (byte fallback <0xNN>, unknown token with
 *      fuse_unk), then merges lowest rank first, leftmost on equal ranks, with the same
 *      queue discipline as tokenizers (stale entries are recognised by their result id);
 *   5. post-processor (TemplateProcessing, Bert/Roberta, ByteLevel) with
 *      LRT_TOKENIZE_ADD_SPECIAL.
 *
 * Decoding runs the decoder chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 * Strip) over the token strings; invalid UTF-8 becomes U+FFFD like Rust's
 * from_utf8_lossy (one per maximal invalid subpart; ByteFallback: one per byte).
 *
 * GGUF metadata (tokenizer.ggml.*) is turned into the same structures that
 * loomrt/tokenizer.py builds for `tokenizers` (llama.cpp's behaviour): byte-level BPE with
 * the pre-tokenizer's split expressions for model "gpt2", and a score-ranked BPE with
 * byte fallback and the SentencePiece normalizer/decoder for model "llama".
 *
 * The regular expressions are not interpreted: each supported expression has a
 * hand-written matcher that returns what a backtracking engine (Oniguruma, used by
 * tokenizers) returns for it, including the leftmost-first order of alternatives and the
 * backtracking of \s+(?!\S). Unicode classes come from unicode_tables.c.
 *
 * All input is untrusted: sizes, ids, types and UTF-8 are checked; nothing aborts. The
 * tokenizer is immutable after loading, so one model can tokenize from many threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/formats.h" /* JSON, GGUF metadata */
#include "tokenizer.h"
#include "unicode_tables.h"

#define TOK_MAX_VOCAB (1 << 24)      /* ids must stay below this                       */
#define TOK_MAX_STEPS 8              /* pre-tokenizer / normalizer / decoder steps      */

/* ---- small utilities -------------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  return realloc(p, (n && size) ? n * size : 1);
}

/* Grow *p (capacity *cap elements of `size`) to hold at least `need`. 0 on OOM. */
static int grow(void **p, size_t *cap, size_t need, size_t size) {
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
static uint32_t u8_dec(const uint8_t *s, size_t n, size_t i, int *len) {
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

static int u8_enc(uint32_t cp, char *o) {
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

/* ---- Unicode classes ---------------------------------------------------------------------- */

enum { UC_OTHER = 0, UC_L = 1, UC_N = 2, UC_M = 3 };

/* Raw class of the generated table: 0 other, 1 L, 2 No, 3 M, 4 Nd, 5 Nl, 6 Pc, 7 other
 * Alphabetic. */
static int uc_raw(uint32_t cp) {
  if (cp > 0x10FFFF) return 0;
  size_t lo = 0, hi = lrt_uc_cat_n; /* last run whose start <= cp */
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if ((lrt_uc_cat[mid] >> 3) <= cp) lo = mid; else hi = mid;
  }
  return (int)(lrt_uc_cat[lo] & 7);
}

/* \p{L} / \p{N} / \p{M} / other, as Oniguruma (tokenizers' regex engine) sees them. */
static int uc_class(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UC_L;
    if (cp >= '0' && cp <= '9') return UC_N;
    return UC_OTHER;
  }
  static const int8_t coarse[8] = {UC_OTHER, UC_L, UC_N, UC_M, UC_N, UC_N, UC_OTHER, UC_OTHER};
  return coarse[uc_raw(cp)];
}

/* Unicode White_Space (Oniguruma's \s with Unicode, Rust's char::is_whitespace). */
static int uc_space(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/* Rust regex's \\w (tokenizers' single_word check): Alphabetic, marks, decimal digits,
 * connector punctuation, joiners. */
static int uc_word(uint32_t c) {
  if (c < 0x80) return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '_';
  if (c == 0x200C || c == 0x200D) return 1;
  int k = uc_raw(c);
  return k != 0 && k != 2;
}

static int ccc_of(uint32_t cp) {
  if (cp < 0x300) return 0;
  size_t lo = 0, hi = lrt_uc_ccc_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (lrt_uc_ccc[mid][1] < cp) lo = mid + 1;
    else if (lrt_uc_ccc[mid][0] > cp) hi = mid;
    else return (int)lrt_uc_ccc[mid][2];
  }
  return 0;
}

static const uint32_t *dec_of(uint32_t cp) {
  size_t lo = 0, hi = lrt_uc_dec_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (lrt_uc_dec[mid][0] < cp) lo = mid + 1;
    else if (lrt_uc_dec[mid][0] > cp) hi = mid;
    else return lrt_uc_dec[mid];
  }
  return NULL;
}

/* ---- GPT-2 byte <-> unicode mapping ------------------------------------------------------- */

static uint32_t byte_char(int b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
  int n = 0;
  for (int x = 0; x < b; x++)
    if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
  return (uint32_t)(256 + n);
}

typedef struct byte_tables {
  char enc[256][2];
  uint8_t enc_len[256];
  int16_t dec[324]; /* code point -> byte, -1 */
} byte_tables;

static void byte_tables_init(byte_tables *bt) {
  for (int i = 0; i < 324; i++) bt->dec[i] = -1;
  for (int b = 0; b < 256; b++) {
    uint32_t c = byte_char(b);
    bt->enc_len[b] = (uint8_t)u8_enc(c, bt->enc[b]);
    bt->dec[c] = (int16_t)b;
  }
}

/* ---- the tokenizer structure -------------------------------------------------------------- */

/* Pre-tokenizer split expressions with hand-written matchers. */
enum {
  PAT_LITERAL = 0, /* a plain string pattern                                 */
  PAT_GPT2,        /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
  PAT_LLAMA3,      /* contractions|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
  PAT_QWEN2,       /* the same with \p{N} */
  PAT_N1,          /* \p{N} */
  PAT_N3,          /* \p{N}{1,3} */
  PAT_NPLUS        /* \p{N}+ */
};

enum { BEH_REMOVED, BEH_ISOLATED, BEH_PREV, BEH_NEXT, BEH_CONTIGUOUS };
enum { PT_SPLIT, PT_BYTELEVEL, PT_METASPACE, PT_DIGITS };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };
enum { NM_PREPEND, NM_REPLACE, NM_NFC, NM_NFD };
enum { DC_BYTELEVEL, DC_METASPACE, DC_REPLACE, DC_BYTEFALLBACK, DC_FUSE, DC_STRIP };

typedef struct pt_step {
  int type;
  int pat, ci, behavior, invert;  /* SPLIT (ci: contractions case-insensitive, Unicode folds) */
  char *lit;                      /* SPLIT literal / METASPACE replacement (UTF-8)          */
  size_t lit_len;
  uint32_t repl;                  /* METASPACE replacement code point                       */
  int prepend, split;             /* METASPACE                                              */
  int add_prefix_space, use_regex;/* BYTELEVEL                                              */
  int individual;                 /* DIGITS                                                 */
} pt_step;

typedef struct nm_step {
  int type;
  char *a, *b; /* PREPEND: a; REPLACE: a -> b */
  size_t a_len, b_len;
} nm_step;

typedef struct dc_step {
  int type;
  char *a, *b; /* REPLACE a -> b; STRIP: a = content char */
  size_t a_len, b_len;
  uint32_t repl; /* METASPACE */
  int prepend;   /* METASPACE */
  int64_t start, stop; /* STRIP */
} dc_step;

typedef struct added_tok {
  const char *s; /* content (raw set) or normalized content (normalized set) */
  size_t n;
  int32_t id;
  uint8_t special, lstrip, rstrip, single_word;
} added_tok;

typedef struct added_set {
  added_tok *t; /* sorted by first byte */
  size_t n;
  uint32_t first[257]; /* t[first[b] .. first[b+1]) start with byte b */
} added_set;

struct lrt_tokenizer {
  /* vocabulary: id -> text (model vocab or added content) */
  int32_t n_ids;
  size_t *off;       /* (n_ids + 1) offsets into pool; unassigned ids: equal offsets and !assigned */
  uint8_t *assigned; /* 1 model vocab, 2 added (content), 3 both */
  uint8_t *special;  /* decode: skipped with LRT_DETOKENIZE_SKIP_SPECIAL */
  char *pool;
  size_t pool_len;
  /* model vocab hash: text -> id */
  int32_t *vh;
  size_t vh_cap;
  size_t *voff; /* model vocab text of id (separate from added content) */
  uint32_t *vlen;
  char *vpool;
  /* merges hash: (a, b) -> (rank, id) */
  uint64_t *mk;
  int32_t *mrank, *mid;
  size_t mh_cap;
  /* BPE options */
  int byte_fallback, fuse_unk, ignore_merges;
  int32_t unk; /* -1 none, -2 drop (GGUF missing bytes), else id */
  int32_t byte_id[256];
  /* pipeline */
  nm_step nm[TOK_MAX_STEPS]; int n_nm;
  pt_step pt[TOK_MAX_STEPS]; int n_pt;
  dc_step dc[TOK_MAX_STEPS]; int n_dc; int has_decoder;
  int32_t *post; size_t n_post; int has_post; /* ids, -1 = the sequence */
  added_set raw, norm;
  char *added_pool;
  byte_tables bt;
  /* lrt_token_bytes */
  size_t *tb_off;
  char *tb_pool;
};

/* ---- hashing ------------------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
  return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k) {
  k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ULL; k ^= k >> 33;
  return k;
}

static int32_t vocab_find(const lrt_tokenizer *t, const char *s, size_t n) {
  if (!t->vh_cap) return -1;
  size_t mask = t->vh_cap - 1, i = (size_t)hash_bytes(s, n) & mask;
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
  size_t mask = t->mh_cap - 1, i = (size_t)hash_pair(key) & mask;
  for (;;) {
    if (t->mrank[i] < 0) return 0;
    if (t->mk[i] == key) { *rank = t->mrank[i]; *id = t->mid[i]; return 1; }
    i = (i + 1) & mask;
  }
}

/* ---- builder: what both loaders fill before finishing ---------------------------------- */

typedef struct vocab_entry { const char *s; size_t n; int32_t id; } vocab_entry;
typedef struct added_entry {
  const char *s; size_t n;
  uint8_t special, lstrip, rstrip, single_word, normalized;
} added_entry;
typedef struct merge_entry { const char *a, *b; size_t na, nb; } merge_entry;

typedef struct builder {
  const char *what;
  vocab_entry *vocab; size_t n_vocab;
  merge_entry *merges; size_t n_merges;
  int merges_keep_first; /* GGUF: first rank of a duplicate; tokenizer.json: last */
  added_entry *added; size_t n_added;
  const char *unk; size_t unk_len; int unk_drop;
} builder;

static int32_t oom(void) { return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory while loading the tokenizer"); }

static char *dup_bytes(const char *s, size_t n) {
  char *p = (char *)malloc(n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = 0;
  return p;
}

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
  free(t);
}

int64_t lrt_tok_size(const lrt_tokenizer *t) { return t ? t->n_ids : 0; }

/* forward declarations: the normalizer is needed to normalize added tokens */
typedef struct sbuf { char *p; size_t n, cap; } sbuf;
static int32_t normalize(const lrt_tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp);
static int32_t compute_token_bytes(lrt_tokenizer *t);

static int sb_put(sbuf *b, const char *s, size_t n) {
  if (!grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return 0;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  return 1;
}

static int cmp_added(const void *a, const void *b) {
  const added_tok *x = (const added_tok *)a, *y = (const added_tok *)b;
  uint8_t cx = (uint8_t)x->s[0], cy = (uint8_t)y->s[0];
  if (cx != cy) return cx < cy ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
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
static int32_t finish(lrt_tokenizer *t, builder *b) {
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
  if (!t->voff || !t->vlen || !t->vpool || !t->vh || !seen) { free(seen); return oom(); }
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
    if (vocab_find(t, e->s, e->n) >= 0) {
      free(seen);
      return lrt_err(LRT_ERR_FORMAT, "%s: token %.60s appears twice in the vocabulary", what, e->s);
    }
    seen[e->id] = 1;
    memcpy(t->vpool + pos, e->s, e->n);
    t->voff[e->id] = pos;
    t->vlen[e->id] = (uint32_t)e->n;
    pos += e->n;
    size_t j = (size_t)hash_bytes(e->s, e->n) & (cap - 1);
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
    if (!t->mk || !t->mrank || !t->mid) { free(seen); return oom(); }
    t->mh_cap = mc;
    memset(t->mrank, 0xFF, mc * sizeof(int32_t));
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t i = 0; i < b->n_merges; i++) {
      const merge_entry *e = &b->merges[i];
      int32_t ia = vocab_find(t, e->a, e->na), ib = vocab_find(t, e->b, e->nb);
      if (!grow((void **)&cat, &cat_cap, e->na + e->nb + 1, 1)) { free(cat); free(seen); return oom(); }
      memcpy(cat, e->a, e->na);
      memcpy(cat + e->na, e->b, e->nb);
      int32_t ic = vocab_find(t, cat, e->na + e->nb);
      if (ia < 0 || ib < 0 || ic < 0) {
        const char *which = ia < 0 ? e->a : ib < 0 ? e->b : "their concatenation";
        int wl = ia < 0 ? (int)e->na : ib < 0 ? (int)e->nb : 19;
        free(cat); free(seen);
        return lrt_err(LRT_ERR_FORMAT, "%s: merge %zu uses %.*s, which is not in the vocabulary", what, i,
                       wl > 60 ? 60 : wl, which);
      }
      uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
      size_t j = (size_t)hash_pair(key) & (mc - 1);
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
    t->unk = vocab_find(t, b->unk, b->unk_len);
    if (t->unk < 0) {
      free(seen);
      return lrt_err(LRT_ERR_FORMAT, "%s: the unknown token %.60s is not in the vocabulary", what, b->unk);
    }
  }
  for (int i = 0; i < 256; i++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", i);
    t->byte_id[i] = vocab_find(t, name, 6);
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
  if (!aid || !in_trie || !spec) { free(aid); free(in_trie); free(spec); free(seen); return oom(); }
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
    return oom();
  }
  for (size_t j = 0; j < hcap; j++) hidx[j] = SIZE_MAX;
  for (size_t i = 0; i < na; i++) {
    const added_entry *e = &b->added[i];
    size_t j = (size_t)hash_bytes(e->s, e->n) & (hcap - 1);
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
    if (id < 0) id = vocab_find(t, e->s, e->n);
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
  if (!owner) { free(aid); free(in_trie); free(spec); free(group); free(first_special); free(hidx); return oom(); }
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
  if (!noff) st = oom();
  for (size_t i = 0; i < na && !st; i++) {
    const added_entry *e = &b->added[i];
    noff[i] = all.n;
    if (aid[i] < 0) continue;
    if (e->normalized) {
      normed.n = 0;
      st = normalize(t, e->s, e->n, &normed, &tmp);
      if (!st && !sb_put(&all, normed.p, normed.n)) st = oom();
    } else if (!sb_put(&all, e->s, e->n)) {
      st = oom();
    }
  }
  if (noff) noff[na] = all.n;
  free(normed.p);
  free(tmp.p);
  t->added_pool = all.p ? all.p : (char *)malloc(1);
  if (!st && !t->added_pool) st = oom();
  size_t n_raw = 0, n_norm = 0;
  for (size_t i = 0; i < na; i++)
    if (in_trie[i]) { if (b->added[i].normalized) n_norm++; else n_raw++; }
  t->raw.t = (added_tok *)calloc(n_raw + 1, sizeof(added_tok));
  t->norm.t = (added_tok *)calloc(n_norm + 1, sizeof(added_tok));
  if (!st && (!t->raw.t || !t->norm.t)) st = oom();
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
    if (!t->off || !t->assigned || !t->special || !t->pool) st = oom();
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
        size_t j = (size_t)hash_bytes(src, srcn) & (hcap - 1);
        while (hidx[j] != SIZE_MAX) {
          const added_entry *g = &b->added[hidx[j]];
          if (g->n == srcn && memcmp(g->s, src, srcn) == 0) {
            t->special[id] = first_special[hidx[j]] < na;
            break;
          }
          j = (j + 1) & (hcap - 1);
        }
      } else if (id < n_model && (t->vlen[id] || vocab_find(t, t->vpool + t->voff[id], 0) == id)) {
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
  byte_tables_init(&t->bt);
  return compute_token_bytes(t);
}

/* ---- encoding context (per call; the tokenizer itself is read-only) -------------------- */

typedef struct level {
  uint32_t *cp; size_t cp_cap;
  size_t *coff; size_t coff_cap; /* byte offset of each char, +1 */
  size_t *seg; size_t seg_cap;   /* (start, end, is_match) triples */
  sbuf buf;
} level;

typedef struct sym { int32_t id, prev, next, len; } sym;
typedef struct mq { int32_t rank, pos, id; } mq;

typedef struct enc_ctx {
  const lrt_tokenizer *t;
  int32_t *out; size_t n_out, out_cap;
  level lv[TOK_MAX_STEPS + 2];
  sym *sy; size_t sy_cap;
  mq *q; size_t q_cap;
  sbuf norm, tmp;
  size_t *aseg; size_t aseg_cap; /* added-token split: (start, end, id) */
  size_t *aseg2; size_t aseg2_cap;
} enc_ctx;

static void ctx_free(enc_ctx *c) {
  free(c->out);
  for (int i = 0; i < TOK_MAX_STEPS + 2; i++) {
    free(c->lv[i].cp); free(c->lv[i].coff); free(c->lv[i].seg); free(c->lv[i].buf.p);
  }
  free(c->sy); free(c->q); free(c->norm.p); free(c->tmp.p); free(c->aseg); free(c->aseg2);
}

static int push_id(enc_ctx *c, int32_t id) {
  if (!grow((void **)&c->out, &c->out_cap, c->n_out + 1, sizeof(int32_t))) return 0;
  c->out[c->n_out++] = id;
  return 1;
}

/* ---- BPE ----------------------------------------------------------------------------------- */

static int mq_less(const mq *a, const mq *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int mq_push(enc_ctx *c, size_t *n, int32_t rank, int32_t pos, int32_t id) {
  if (!grow((void **)&c->q, &c->q_cap, *n + 1, sizeof(mq))) return 0;
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
  if (*ns >= INT32_MAX - 1 || !grow((void **)&c->sy, &c->sy_cap, *ns + 1, sizeof(sym))) return 0;
  sym *s = &c->sy[*ns];
  s->id = id;
  s->len = len;
  s->prev = (int32_t)*ns - 1;
  s->next = (int32_t)*ns + 1;
  (*ns)++;
  return 1;
}

static int32_t bpe_word(enc_ctx *c, const char *s, size_t n) {
  const lrt_tokenizer *t = c->t;
  if (n == 0) return LRT_OK;
  if (t->ignore_merges) {
    int32_t id = vocab_find(t, s, n);
    if (id >= 0) return push_id(c, id) ? LRT_OK : oom();
  }
  size_t ns = 0;
  int has_unk = 0;
  int32_t unk_len = 0;
  const uint8_t *u = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    int l;
    u8_dec(u, n, i, &l);
    int32_t id = vocab_find(t, s + i, (size_t)l);
    if (id >= 0) {
      if (has_unk) { if (!add_sym(c, &ns, t->unk, unk_len)) return oom(); has_unk = 0; }
      if (!add_sym(c, &ns, id, l)) return oom();
    } else {
      int done = 0;
      if (t->byte_fallback) {
        int ok = 1;
        for (int k = 0; k < l; k++) if (t->byte_id[u[i + k]] < 0) ok = 0;
        if (ok) {
          for (int k = 0; k < l; k++) if (!add_sym(c, &ns, t->byte_id[u[i + k]], 1)) return oom();
          done = 1;
        }
      }
      if (!done && t->unk != -1) {
        if (has_unk && t->fuse_unk) unk_len += l;
        else {
          if (has_unk && !add_sym(c, &ns, t->unk, unk_len)) return oom();
          has_unk = 1;
          unk_len = l;
        }
      }
    }
    i += (size_t)l;
  }
  if (has_unk && !add_sym(c, &ns, t->unk, unk_len)) return oom();
  if (ns == 0) return LRT_OK;
  sym *sy = c->sy;
  sy[ns - 1].next = -1;
  size_t nq = 0;
  int32_t rank, nid;
  for (size_t i = 0; i + 1 < ns; i++)
    if (merge_find(t, sy[i].id, sy[i + 1].id, &rank, &nid) && !mq_push(c, &nq, rank, (int32_t)i, nid)) return oom();
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
      return oom();
    if (a->next >= 0 && merge_find(t, a->id, sy[a->next].id, &rank, &nid) && !mq_push(c, &nq, rank, top.pos, nid))
      return oom();
  }
  for (int32_t i = 0; i >= 0; i = sy[i].next)
    if (sy[i].id >= 0 && !push_id(c, sy[i].id)) return oom();
  return LRT_OK;
}

/* ---- pattern matchers ------------------------------------------------------------------- */

#define IS_L(k) ((k) == UC_L)
#define IS_N(k) ((k) == UC_N)

static int has_bytes(const char *s, size_t n, const char *p, size_t m) {
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(s + i, p, m) == 0) return 1;
  return 0;
}

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
  int k = uc_class(c);
  switch (pat) {
    case PAT_N1: return IS_N(k) ? i + 1 : 0;
    case PAT_N3:
    case PAT_NPLUS: {
      if (!IS_N(k)) return 0;
      size_t j = i + 1, lim = pat == PAT_N3 ? i + 3 : n;
      while (j < n && j < lim && IS_N(uc_class(cp[j]))) j++;
      return j;
    }
    case PAT_GPT2: {
      size_t e;
      if (ci >= 0 && (e = m_contraction(cp, n, i, 0))) {
        /* GPT-2's contractions are case-sensitive */
        uint32_t a = cp[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd' || a == 'r' || a == 'v' || a == 'l') return e;
      }
      int kn = i + 1 < n ? uc_class(cp[i + 1]) : -1;
      int sp_next = i + 1 < n && uc_space(cp[i + 1]);
      /* ` ?\p{L}+` */
      if (c == ' ' && kn == UC_L) { size_t j = i + 2; while (j < n && IS_L(uc_class(cp[j]))) j++; return j; }
      if (IS_L(k)) { size_t j = i + 1; while (j < n && IS_L(uc_class(cp[j]))) j++; return j; }
      /* ` ?\p{N}+` */
      if (c == ' ' && kn == UC_N) { size_t j = i + 2; while (j < n && IS_N(uc_class(cp[j]))) j++; return j; }
      if (IS_N(k)) { size_t j = i + 1; while (j < n && IS_N(uc_class(cp[j]))) j++; return j; }
      /* ` ?[^\s\p{L}\p{N}]+` */
      size_t j = 0;
      if (c == ' ' && i + 1 < n && !sp_next && kn != UC_L && kn != UC_N) j = i + 1;
      else if (!uc_space(c) && k != UC_L && k != UC_N) j = i;
      else j = (size_t)-1;
      if (j != (size_t)-1) {
        j++;
        while (j < n) { uint32_t d = cp[j]; int kd = uc_class(d); if (uc_space(d) || IS_L(kd) || IS_N(kd)) break; j++; }
        return j;
      }
      /* `\s+(?!\S)` then `\s+` */
      if (uc_space(c)) {
        size_t r = i + 1;
        while (r < n && uc_space(cp[r])) r++;
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
      int kn = i + 1 < n ? uc_class(cp[i + 1]) : -1;
      /* `[^\r\n\p{L}\p{N}]?\p{L}+` */
      if (c != '\r' && c != '\n' && k != UC_L && k != UC_N && kn == UC_L) {
        size_t j = i + 2; while (j < n && IS_L(uc_class(cp[j]))) j++; return j;
      }
      if (IS_L(k)) { size_t j = i + 1; while (j < n && IS_L(uc_class(cp[j]))) j++; return j; }
      /* `\p{N}{1,3}` or `\p{N}` */
      if (IS_N(k)) {
        if (pat == PAT_QWEN2) return i + 1;
        size_t j = i + 1; while (j < n && j < i + 3 && IS_N(uc_class(cp[j]))) j++; return j;
      }
      /* ` ?[^\s\p{L}\p{N}]+[\r\n]*` */
      size_t j = (size_t)-1;
      if (c == ' ' && i + 1 < n && !uc_space(cp[i + 1]) && kn != UC_L && kn != UC_N) j = i + 1;
      else if (!uc_space(c) && k != UC_L && k != UC_N) j = i;
      if (j != (size_t)-1) {
        j++;
        while (j < n) { uint32_t d = cp[j]; int kd = uc_class(d); if (uc_space(d) || IS_L(kd) || IS_N(kd)) break; j++; }
        while (j < n && (cp[j] == '\r' || cp[j] == '\n')) j++;
        return j;
      }
      if (uc_space(c)) {
        size_t r = i + 1;
        while (r < n && uc_space(cp[r])) r++;
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

static int seg_push(size_t **seg, size_t *cap, size_t *n, size_t a, size_t b, size_t m) {
  if (!grow((void **)seg, cap, (*n + 1) * 3, sizeof(size_t))) return 0;
  (*seg)[*n * 3] = a; (*seg)[*n * 3 + 1] = b; (*seg)[*n * 3 + 2] = m;
  (*n)++;
  return 1;
}

/* Decode s into lv->cp / lv->coff. Returns the number of chars or (size_t)-1 on OOM. */
static size_t decode_chars(level *lv, const char *s, size_t n) {
  if (!grow((void **)&lv->cp, &lv->cp_cap, n + 1, sizeof(uint32_t)) ||
      !grow((void **)&lv->coff, &lv->coff_cap, n + 2, sizeof(size_t)))
    return (size_t)-1;
  size_t k = 0;
  const uint8_t *u = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    int l;
    lv->cp[k] = u8_dec(u, n, i, &l);
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

static int32_t pretok(enc_ctx *c, int step, const char *s, size_t n, int at_origin);

/* Split s by a step's matcher into lv->seg; returns count or -1 on OOM. */
static int64_t split_matches(const pt_step *p, level *lv, const char *s, size_t n) {
  size_t ns = 0;
  if (p->type == PT_SPLIT && p->pat == PAT_LITERAL) {
    size_t prev = 0, i = 0;
    if (p->lit_len == 0) { /* an empty pattern never matches */
      if (!seg_push(&lv->seg, &lv->seg_cap, &ns, 0, n, 0)) return -1;
      return (int64_t)ns;
    }
    while (i + p->lit_len <= n) {
      if (memcmp(s + i, p->lit, p->lit_len) == 0) {
        if (i > prev && !seg_push(&lv->seg, &lv->seg_cap, &ns, prev, i, 0)) return -1;
        if (!seg_push(&lv->seg, &lv->seg_cap, &ns, i, i + p->lit_len, 1)) return -1;
        i += p->lit_len;
        prev = i;
      } else {
        i++;
      }
    }
    if (prev < n && !seg_push(&lv->seg, &lv->seg_cap, &ns, prev, n, 0)) return -1;
    return (int64_t)ns;
  }
  size_t nc = decode_chars(lv, s, n);
  if (nc == (size_t)-1) return -1;
  const uint32_t *cp = lv->cp;
  size_t prev = 0;
  for (size_t i = 0; i < nc;) {
    size_t e = 0;
    if (p->type == PT_SPLIT) e = pat_at(p->pat, p->ci, cp, nc, i);
    else if (p->type == PT_DIGITS) e = IS_N(uc_class(cp[i])) ? i + 1 : 0;
    else if (p->type == PT_METASPACE) e = cp[i] == p->repl ? i + 1 : 0;
    else e = pat_at(PAT_GPT2, 0, cp, nc, i); /* ByteLevel's own expression */
    if (e) {
      if (i > prev && !seg_push(&lv->seg, &lv->seg_cap, &ns, lv->coff[prev], lv->coff[i], 0)) return -1;
      if (!seg_push(&lv->seg, &lv->seg_cap, &ns, lv->coff[i], lv->coff[e], 1)) return -1;
      i = e;
      prev = e;
    } else {
      i++;
    }
  }
  if (prev < nc && !seg_push(&lv->seg, &lv->seg_cap, &ns, lv->coff[prev], n, 0)) return -1;
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
    int32_t st = pretok(c, step + 1, s + a, b - a, at_origin && a == 0);
    if (st) return st;
  }
  return LRT_OK;
}

static int32_t pretok(enc_ctx *c, int step, const char *s, size_t n, int at_origin) {
  const lrt_tokenizer *t = c->t;
  if (n == 0) return LRT_OK;
  if (step == t->n_pt) return bpe_word(c, s, n);
  const pt_step *p = &t->pt[step];
  level *lv = &c->lv[step];
  switch (p->type) {
    case PT_SPLIT:
    case PT_DIGITS: {
      int64_t ns = split_matches(p, lv, s, n);
      if (ns < 0) return oom();
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
        if (s[i] == ' ') { if (!sb_put(o, p->lit, p->lit_len)) return oom(); }
        else if (!sb_put(o, s + i, 1)) return oom();
      }
      int has = o->n >= p->lit_len && memcmp(o->p, p->lit, p->lit_len) == 0;
      if (!has && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && at_origin))) {
        if (!sb_put(o, p->lit, p->lit_len)) return oom();
        memmove(o->p + p->lit_len, o->p, o->n - p->lit_len);
        memcpy(o->p, p->lit, p->lit_len);
      }
      if (!p->split) return pretok(c, step + 1, o->p, o->n, at_origin);
      int64_t ns = split_matches(p, lv, o->p, o->n);
      if (ns < 0) return oom();
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
        if (!sb_put(b, " ", 1) || !sb_put(b, s, n)) return oom();
        src = b->p;
        sn = b->n;
      }
      size_t ns = 0;
      if (p->use_regex) {
        int64_t r = split_matches(p, lv, src, sn);
        if (r < 0) return oom();
        ns = (size_t)r;
      } else {
        lv->seg_cap = lv->seg_cap; /* one segment: the whole piece */
        if (!seg_push(&lv->seg, &lv->seg_cap, &ns, 0, sn, 0)) return oom();
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
          if (!sb_put(&mapped, t->bt.enc[ch], t->bt.enc_len[ch])) { free(mapped.p); return oom(); }
        }
        int32_t st = pretok(c, step + 1, mapped.p, mapped.n, at_origin && a == 0);
        free(mapped.p);
        if (st) return st;
      }
      return LRT_OK;
    }
  }
  return lrt_err(LRT_ERR_INTERNAL, "unknown pre-tokenizer step");
}

/* ---- normalizer ------------------------------------------------------------------------------- */

static int nfd_push_cp(uint32_t **v, size_t *n, size_t *cap, uint32_t cp) {
  if (!grow((void **)v, cap, *n + 1, sizeof(uint32_t))) return 0;
  (*v)[(*n)++] = cp;
  return 1;
}

static int decompose(uint32_t **v, size_t *n, size_t *cap, uint32_t cp) {
  if (cp >= 0xAC00 && cp <= 0xD7A3) {
    uint32_t si = cp - 0xAC00, l = 0x1100 + si / 588, vv = 0x1161 + (si % 588) / 28, tt = 0x11A7 + si % 28;
    if (!nfd_push_cp(v, n, cap, l) || !nfd_push_cp(v, n, cap, vv)) return 0;
    if (tt != 0x11A7 && !nfd_push_cp(v, n, cap, tt)) return 0;
    return 1;
  }
  const uint32_t *d = cp >= 0xC0 ? dec_of(cp) : NULL;
  if (!d) return nfd_push_cp(v, n, cap, cp);
  if (!decompose(v, n, cap, d[1])) return 0;
  if (d[2] && !decompose(v, n, cap, d[2])) return 0;
  return 1;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= 0x1100 && a < 0x1113 && b >= 0x1161 && b < 0x1176) return 0xAC00 + ((a - 0x1100) * 21 + (b - 0x1161)) * 28;
  if (a >= 0xAC00 && a <= 0xD7A3 && (a - 0xAC00) % 28 == 0 && b > 0x11A7 && b < 0x11C3) return a + (b - 0x11A7);
  size_t lo = 0, hi = lrt_uc_comp_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const uint32_t *e = lrt_uc_comp[mid];
    if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1;
    else if (e[0] == a && e[1] == b) return e[2];
    else hi = mid;
  }
  return 0;
}

static int32_t unicode_normalize(const char *s, size_t n, int compose, sbuf *out) {
  uint32_t *v = NULL;
  size_t nv = 0, cap = 0;
  const uint8_t *u = (const uint8_t *)s;
  size_t ascii = 0;
  while (ascii < n && u[ascii] < 0x80) ascii++;
  if (ascii == n) return sb_put(out, s, n) ? LRT_OK : oom(); /* ASCII is invariant */
  for (size_t i = 0; i < n;) {
    int l;
    uint32_t cp = u8_dec(u, n, i, &l);
    if (!decompose(&v, &nv, &cap, cp)) { free(v); return oom(); }
    i += (size_t)l;
  }
  /* canonical ordering: each run of non-starters sorted stably by combining class;
   * insertion sort for short runs, a counting sort (linear) for long hostile ones */
  for (size_t i = 0; i < nv;) {
    if (!ccc_of(v[i])) { i++; continue; }
    size_t j = i;
    while (j < nv && ccc_of(v[j])) j++;
    size_t len = j - i;
    if (len > 1 && len <= 16) {
      for (size_t q = i + 1; q < j; q++) {
        uint32_t x = v[q];
        int cx = ccc_of(x);
        size_t r = q;
        while (r > i && ccc_of(v[r - 1]) > cx) { v[r] = v[r - 1]; r--; }
        v[r] = x;
      }
    } else if (len > 16) {
      uint32_t *run = (uint32_t *)malloc(len * sizeof(uint32_t));
      uint8_t *cls = (uint8_t *)malloc(len);
      if (!run || !cls) { free(run); free(cls); free(v); return oom(); }
      size_t count[257] = {0};
      for (size_t q = 0; q < len; q++) { cls[q] = (uint8_t)ccc_of(v[i + q]); count[cls[q] + 1]++; }
      for (int c = 1; c <= 256; c++) count[c] += count[c - 1];
      for (size_t q = 0; q < len; q++) run[count[cls[q]]++] = v[i + q];
      memcpy(v + i, run, len * sizeof(uint32_t));
      free(run);
      free(cls);
    }
    i = j;
  }
  if (compose && nv) { /* canonical composition (Unicode Standard, section 3.11) */
    size_t starter = 0, w = 1;
    int last = ccc_of(v[0]) ? 256 : 0;
    for (size_t i = 1; i < nv; i++) {
      uint32_t x = v[i];
      int k = ccc_of(x);
      uint32_t comp = (last < k || last == 0) ? compose_pair(v[starter], x) : 0;
      if (comp && last != 256) {
        v[starter] = comp;
        continue;
      }
      if (k == 0) starter = w;
      last = k;
      v[w++] = x;
    }
    nv = w;
  }
  for (size_t i = 0; i < nv; i++) {
    char e[4];
    if (!sb_put(out, e, (size_t)u8_enc(v[i], e))) { free(v); return oom(); }
  }
  free(v);
  return LRT_OK;
}

static int32_t normalize(const lrt_tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp) {
  out->n = 0;
  if (!sb_put(out, s, n)) return oom();
  for (int k = 0; k < t->n_nm; k++) {
    const nm_step *m = &t->nm[k];
    tmp->n = 0;
    switch (m->type) {
      case NM_PREPEND:
        if (out->n == 0) continue;
        if (!sb_put(tmp, m->a, m->a_len) || !sb_put(tmp, out->p, out->n)) return oom();
        break;
      case NM_REPLACE: {
        size_t i = 0;
        if (m->a_len == 0) continue;
        while (i < out->n) {
          if (i + m->a_len <= out->n && memcmp(out->p + i, m->a, m->a_len) == 0) {
            if (!sb_put(tmp, m->b, m->b_len)) return oom();
            i += m->a_len;
          } else {
            if (!sb_put(tmp, out->p + i, 1)) return oom();
            i++;
          }
        }
        break;
      }
      case NM_NFC:
      case NM_NFD: {
        int32_t st = unicode_normalize(out->p, out->n, m->type == NM_NFC, tmp);
        if (st) return st;
        break;
      }
    }
    sbuf sw = *out;
    *out = *tmp;
    *tmp = sw;
  }
  return LRT_OK;
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
        start_space = !uc_word(u8_dec(u, n, q, &l));
      }
      if (stop < n) {
        int l;
        stop_space = !uc_word(u8_dec(u, n, stop, &l));
      }
      if (!start_space || !stop_space) continue;
    }
    if (best->lstrip) {
      size_t q = start;
      while (q > 0) {
        size_t p0 = q - 1;
        while (p0 > 0 && (u[p0] & 0xC0) == 0x80) p0--;
        int l;
        if (!uc_space(u8_dec(u, n, p0, &l))) break;
        q = p0;
      }
      start = q > start_offset ? q : start_offset;
    }
    if (best->rstrip) {
      while (stop < n) {
        int l;
        if (!uc_space(u8_dec(u, n, stop, &l))) break;
        stop += (size_t)l;
      }
    }
    if (start_offset < start && !seg_push(seg, cap, &ns, start_offset, start, (size_t)-1)) return -1;
    if (!seg_push(seg, cap, &ns, start, stop, (size_t)best->id)) return -1;
    start_offset = stop;
  }
  if (start_offset < n && !seg_push(seg, cap, &ns, start_offset, n, (size_t)-1)) return -1;
  return (int64_t)ns;
}

/* ---- encode ----------------------------------------------------------------------------------- */

static int32_t encode_text(enc_ctx *c, const char *text, size_t len, int parse_special) {
  const lrt_tokenizer *t = c->t;
  int64_t ns = split_added(&t->raw, parse_special, text, len, &c->aseg, &c->aseg_cap);
  if (ns < 0) return oom();
  for (int64_t k = 0; k < ns; k++) {
    size_t a = c->aseg[k * 3], b = c->aseg[k * 3 + 1], id = c->aseg[k * 3 + 2];
    if (id != (size_t)-1) {
      if (!push_id(c, (int32_t)id)) return oom();
      continue;
    }
    if (b <= a) continue;
    const char *s = text + a;
    size_t n = b - a;
    if (t->n_nm) {
      int32_t st = normalize(t, s, n, &c->norm, &c->tmp);
      if (st) return st;
      s = c->norm.p;
      n = c->norm.n;
    }
    if (n == 0) continue;
    int64_t ns2 = split_added(&t->norm, parse_special, s, n, &c->aseg2, &c->aseg2_cap);
    if (ns2 < 0) return oom();
    for (int64_t q = 0; q < ns2; q++) {
      size_t a2 = c->aseg2[q * 3], b2 = c->aseg2[q * 3 + 1], id2 = c->aseg2[q * 3 + 2];
      if (id2 != (size_t)-1) {
        if (!push_id(c, (int32_t)id2)) return oom();
        continue;
      }
      int32_t st = pretok(c, 0, s + a2, b2 - a2, a == 0 && a2 == 0);
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
      if (!push_id(&c, t->post[tmpl_start])) { st = oom(); goto done; }
  }
  if (len) st = encode_text(&c, text, len, (flags & LRT_TOKENIZE_PARSE_SPECIAL) != 0);
  if (st) goto done;
  if (add) {
    for (size_t i = tmpl_start + 1; i < t->n_post; i++)
      if (t->post[i] >= 0 && !push_id(&c, t->post[i])) { st = oom(); goto done; }
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

/* ---- decode ----------------------------------------------------------------------------------- */

typedef struct slist { sbuf b; size_t *off; size_t n, cap; } slist;

static int sl_begin(slist *l) { /* start a new string */
  if (!grow((void **)&l->off, &l->cap, l->n + 2, sizeof(size_t))) return 0;
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
    if (l) { if (!sb_put(o, (const char *)p + i, l)) return 0; i += l; }
    else { if (!sb_put(o, "\xEF\xBF\xBD", 3)) return 0; i += bad; }
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
          uint32_t cp = u8_dec((const uint8_t *)s, n, j, &l);
          int b = cp < 324 ? t->bt.dec[cp] : -1;
          if (b < 0) { ok = 0; break; }
          char ch = (char)b;
          if (!sb_put(&raw, &ch, 1)) { free(raw.p); return oom(); }
          j += (size_t)l;
        }
        if (!ok) { raw.n = start; if (!sb_put(&raw, s, n)) { free(raw.p); return oom(); } }
      }
      if (!sl_begin(out) || !put_lossy(&out->b, (const uint8_t *)(raw.p ? raw.p : ""), raw.n)) { free(raw.p); return oom(); }
      sl_end(out);
      free(raw.p);
      return LRT_OK;
    }
    case DC_METASPACE:
    case DC_REPLACE: {
      char rep[4];
      int rl = d->type == DC_METASPACE ? u8_enc(d->repl, rep) : 0;
      for (size_t i = 0; i < in->n; i++) {
        const char *s = sl_str(in, i, &n);
        if (!sl_begin(out)) return oom();
        size_t j = 0;
        while (j < n) {
          if (d->type == DC_METASPACE && n - j >= (size_t)rl && memcmp(s + j, rep, (size_t)rl) == 0) {
            if (!(i == 0 && d->prepend != PREPEND_NEVER) && !sb_put(&out->b, " ", 1)) return oom();
            j += (size_t)rl;
          } else if (d->type == DC_REPLACE && d->a_len && n - j >= d->a_len && memcmp(s + j, d->a, d->a_len) == 0) {
            if (!sb_put(&out->b, d->b, d->b_len)) return oom();
            j += d->a_len;
          } else {
            if (!sb_put(&out->b, s + j, 1)) return oom();
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
          if (!grow((void **)&pend, &pcap, np + 1, 1)) { free(pend); return oom(); }
          pend[np++] = byte;
          continue;
        }
        if (np) {
          if (lrt_utf8_valid((const char *)pend, np)) {
            if (!sl_begin(out) || !sb_put(&out->b, (const char *)pend, np)) { free(pend); return oom(); }
            sl_end(out);
          } else {
            for (size_t k = 0; k < np; k++) {
              if (!sl_begin(out) || !sb_put(&out->b, "\xEF\xBF\xBD", 3)) { free(pend); return oom(); }
              sl_end(out);
            }
          }
          np = 0;
        }
        if (s) {
          if (!sl_begin(out) || !sb_put(&out->b, s, n)) { free(pend); return oom(); }
          sl_end(out);
        }
      }
      free(pend);
      return LRT_OK;
    }
    case DC_FUSE: {
      if (!sl_begin(out)) return oom();
      for (size_t i = 0; i < in->n; i++) {
        const char *s = sl_str(in, i, &n);
        if (!sb_put(&out->b, s, n)) return oom();
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
        if (!sl_begin(out) || !sb_put(&out->b, s + a, b - a)) return oom();
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
    if (!sl_begin(&a) || !sb_put(&a.b, t->pool + t->off[id], t->off[id + 1] - t->off[id])) { st = oom(); goto done; }
    sl_end(&a);
  }
  slist *cur = &a, *nxt = &b;
  sbuf res = {0};
  if (!t->has_decoder) {
    for (size_t i = 0; i < cur->n; i++) {
      size_t m;
      const char *s = sl_str(cur, i, &m);
      if ((i && !sb_put(&res, " ", 1)) || !sb_put(&res, s, m)) { free(res.p); st = oom(); goto done; }
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
      if (!sb_put(&res, s, m)) { free(res.p); st = oom(); goto done; }
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
static int32_t compute_token_bytes(lrt_tokenizer *t) {
  t->tb_off = (size_t *)calloc((size_t)t->n_ids + 1, sizeof(size_t));
  if (!t->tb_off) return oom();
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
    if (!sb_put(&cur, s, n)) goto fail;
    for (int k = 0; k < t->n_dc; k++) {
      const dc_step *d = &t->dc[k];
      nx.n = 0;
      if (d->type == DC_REPLACE || d->type == DC_METASPACE) {
        char rep[4];
        const char *pa = d->a;
        size_t pl = d->a_len;
        const char *to = d->b;
        size_t tl = d->b_len;
        if (d->type == DC_METASPACE) { pl = (size_t)u8_enc(d->repl, rep); pa = rep; to = " "; tl = 1; }
        size_t j = 0;
        while (j < cur.n) {
          if (pl && cur.n - j >= pl && memcmp(cur.p + j, pa, pl) == 0) { if (!sb_put(&nx, to, tl)) goto fail; j += pl; }
          else { if (!sb_put(&nx, cur.p + j, 1)) goto fail; j++; }
        }
      } else if (d->type == DC_BYTEFALLBACK) {
        uint8_t byte;
        if (parse_byte_token(cur.p, cur.n, &byte)) { if (!sb_put(&nx, (const char *)&byte, 1)) goto fail; }
        else if (!sb_put(&nx, cur.p, cur.n)) goto fail;
      } else if (d->type == DC_BYTELEVEL) {
        size_t j = 0;
        int ok = 1;
        while (j < cur.n) {
          int l;
          uint32_t cp = u8_dec((const uint8_t *)cur.p, cur.n, j, &l);
          int b = cp < 324 ? t->bt.dec[cp] : -1;
          if (b < 0) { ok = 0; break; }
          char ch = (char)b;
          if (!sb_put(&nx, &ch, 1)) goto fail;
          j += (size_t)l;
        }
        if (!ok) { nx.n = 0; if (!sb_put(&nx, cur.p, cur.n)) goto fail; }
      } else {
        if (!sb_put(&nx, cur.p, cur.n)) goto fail;
      }
      sbuf sw = cur; cur = nx; nx = sw;
    }
    (void)bytelevel; (void)fallback;
    if (!sb_put(&pool, cur.p, cur.n)) goto fail;
  }
  t->tb_off[t->n_ids] = pool.n;
  t->tb_pool = pool.p ? pool.p : (char *)malloc(1);
  free(cur.p); free(nx.p);
  if (!t->tb_pool) return oom();
  return LRT_OK;
fail:
  free(pool.p); free(cur.p); free(nx.p);
  return oom();
}

int32_t lrt_tok_token_bytes(const lrt_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
  if (!t || !bytes || !len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_bytes: NULL argument");
  if (id < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_bytes: token id %d is negative", (int)id);
  if (id >= t->n_ids) { *bytes = ""; *len = 0; return LRT_OK; }
  *bytes = t->tb_pool + t->tb_off[id];
  *len = t->tb_off[id + 1] - t->tb_off[id];
  return LRT_OK;
}

/* ---- tokenizer.json ---------------------------------------------------------------------------- */

static const lj_value *jget(const lj_value *o, const char *k) { return lj_get(o, k); }

static int jstr(const lj_value *v, const char **s, size_t *n) {
  if (!v || v->type != LJ_STRING) return 0;
  *s = v->str; *n = v->str_len;
  return 1;
}

/* Optional bool: absent or null gives def; else must be a bool. */
static int32_t jbool(const char *what, const lj_value *o, const char *key, int def, int *out) {
  const lj_value *v = jget(o, key);
  if (!v || v->type == LJ_NULL) { *out = def; return LRT_OK; }
  if (v->type != LJ_BOOL) return lrt_err(LRT_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
  *out = v->boolean;
  return LRT_OK;
}

static const char *jtype(const lj_value *o) {
  const lj_value *t = jget(o, "type");
  return (t && t->type == LJ_STRING) ? t->str : NULL;
}

static int32_t unsupported(const char *what, const char *section, const char *type) {
  return lrt_err(LRT_ERR_UNSUPPORTED, "%s: %s type \"%.60s\" is not supported by the C tokenizer", what, section,
                 type ? type : "(missing)");
}

/* Single code point of a UTF-8 string, 0 if it is not exactly one. */
static uint32_t one_char(const char *s, size_t n) {
  if (!n) return 0;
  int l;
  uint32_t cp = u8_dec((const uint8_t *)s, n, 0, &l);
  return (size_t)l == n ? cp : 0;
}

static int32_t parse_pattern(const char *what, const lj_value *v, int *is_regex, const char **s, size_t *n) {
  if (!v || v->type != LJ_OBJECT || v->count != 1) return lrt_err(LRT_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", what);
  const lj_member *m = &v->members[0];
  if (m->value.type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: \"pattern\" value must be a string", what);
  if (strcmp(m->key, "String") == 0) *is_regex = 0;
  else if (strcmp(m->key, "Regex") == 0) *is_regex = 1;
  else return lrt_err(LRT_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", what);
  *s = m->value.str;
  *n = m->value.str_len;
  return LRT_OK;
}

#define R_CONTR_CI "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#define R_CONTR_CLS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define R_LLAMA3_TAIL "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_QWEN2_TAIL "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

static const struct { const char *re; int pat, ci; } k_regexes[] = {
    {R_GPT2 "|\\s+", PAT_GPT2, 0},
    {R_GPT2, PAT_GPT2, 0},
    {R_CONTR_CI R_LLAMA3_TAIL, PAT_LLAMA3, 1},
    {R_CONTR_CLS R_LLAMA3_TAIL, PAT_LLAMA3, 2},
    {R_CONTR_CI R_QWEN2_TAIL, PAT_QWEN2, 1},
    {R_CONTR_CLS R_QWEN2_TAIL, PAT_QWEN2, 2},
    {"\\p{N}", PAT_N1, 0},
    {"\\p{N}{1}", PAT_N1, 0},
    {"\\p{N}{1,3}", PAT_N3, 0},
    {"\\p{N}+", PAT_NPLUS, 0},
};

static int32_t add_pt(lrt_tokenizer *t, const char *what, pt_step **out) {
  if (t->n_pt >= TOK_MAX_STEPS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", what, TOK_MAX_STEPS);
  *out = &t->pt[t->n_pt++];
  memset(*out, 0, sizeof **out);
  return LRT_OK;
}

static int32_t parse_prepend_scheme(const char *what, const lj_value *o, int *out) {
  const lj_value *ps = jget(o, "prepend_scheme");
  if (ps && ps->type == LJ_STRING) {
    if (strcmp(ps->str, "always") == 0) *out = PREPEND_ALWAYS;
    else if (strcmp(ps->str, "first") == 0) *out = PREPEND_FIRST;
    else if (strcmp(ps->str, "never") == 0) *out = PREPEND_NEVER;
    else return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace prepend_scheme \"%.20s\" is not always/first/never", what, ps->str);
    return LRT_OK;
  }
  if (ps && ps->type != LJ_NULL) return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace prepend_scheme must be a string", what);
  int add = 1;
  int32_t st = jbool(what, o, "add_prefix_space", 1, &add);
  if (st) return st;
  *out = add ? PREPEND_ALWAYS : PREPEND_NEVER;
  return LRT_OK;
}

static int32_t parse_metaspace_repl(const char *what, const lj_value *o, uint32_t *cp, char **lit, size_t *lit_len) {
  const char *s = "\xE2\x96\x81";
  size_t n = 3;
  const lj_value *r = jget(o, "replacement");
  if (r && !jstr(r, &s, &n)) return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace replacement must be a string", what);
  *cp = one_char(s, n);
  if (!*cp) return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace replacement must be one character", what);
  if (lit) {
    *lit = dup_bytes(s, n);
    if (!*lit) return oom();
    *lit_len = n;
  }
  return LRT_OK;
}

static int32_t parse_pre(lrt_tokenizer *t, const char *what, const lj_value *o, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: pre_tokenizer must be an object or null", what);
  const char *type = jtype(o);
  int32_t st;
  pt_step *p = NULL;
  if (!type) return unsupported(what, "pre_tokenizer", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "pretokenizers");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence pre_tokenizer needs a \"pretokenizers\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: pre_tokenizer sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_pre(t, what, &a->items[i], depth + 1))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "ByteLevel") == 0) {
    if ((st = add_pt(t, what, &p))) return st;
    p->type = PT_BYTELEVEL;
    if ((st = jbool(what, o, "add_prefix_space", 1, &p->add_prefix_space))) return st;
    if ((st = jbool(what, o, "use_regex", 1, &p->use_regex))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "Metaspace") == 0) {
    if ((st = add_pt(t, what, &p))) return st;
    p->type = PT_METASPACE;
    if ((st = parse_metaspace_repl(what, o, &p->repl, &p->lit, &p->lit_len))) return st;
    if ((st = parse_prepend_scheme(what, o, &p->prepend))) return st;
    if ((st = jbool(what, o, "split", 1, &p->split))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "Digits") == 0) {
    if ((st = add_pt(t, what, &p))) return st;
    p->type = PT_DIGITS;
    return jbool(what, o, "individual_digits", 0, &p->individual);
  }
  if (strcmp(type, "Split") == 0) {
    if ((st = add_pt(t, what, &p))) return st;
    p->type = PT_SPLIT;
    int is_re;
    const char *s;
    size_t n;
    if ((st = parse_pattern(what, jget(o, "pattern"), &is_re, &s, &n))) return st;
    if ((st = jbool(what, o, "invert", 0, &p->invert))) return st;
    const lj_value *b = jget(o, "behavior");
    if (!b || b->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: Split pre_tokenizer needs a \"behavior\" string", what);
    static const char *const beh[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    p->behavior = -1;
    for (int i = 0; i < 5; i++) if (strcmp(b->str, beh[i]) == 0) p->behavior = i;
    if (p->behavior < 0) return lrt_err(LRT_ERR_FORMAT, "%s: Split behavior \"%.30s\" is not known", what, b->str);
    if (!is_re) {
      p->pat = PAT_LITERAL;
      p->lit = dup_bytes(s, n);
      if (!p->lit) return oom();
      p->lit_len = n;
      return LRT_OK;
    }
    for (size_t i = 0; i < sizeof k_regexes / sizeof k_regexes[0]; i++)
      if (strlen(k_regexes[i].re) == n && memcmp(k_regexes[i].re, s, n) == 0) {
        p->pat = k_regexes[i].pat;
        p->ci = k_regexes[i].ci;
        return LRT_OK;
      }
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: the Split expression %.120s is not one the C tokenizer implements "
                   "(GPT-2, Llama 3, Qwen2 and digit expressions)", what, s);
  }
  return unsupported(what, "pre_tokenizer", type);
}

static int32_t parse_norm(lrt_tokenizer *t, const char *what, const lj_value *o, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: normalizer must be an object or null", what);
  const char *type = jtype(o);
  int32_t st;
  if (!type) return unsupported(what, "normalizer", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "normalizers");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence normalizer needs a \"normalizers\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: normalizer sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_norm(t, what, &a->items[i], depth + 1))) return st;
    return LRT_OK;
  }
  if (t->n_nm >= TOK_MAX_STEPS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d normalizer steps", what, TOK_MAX_STEPS);
  nm_step *m = &t->nm[t->n_nm];
  memset(m, 0, sizeof *m);
  const char *s;
  size_t n;
  if (strcmp(type, "Prepend") == 0) {
    if (!jstr(jget(o, "prepend"), &s, &n)) return lrt_err(LRT_ERR_FORMAT, "%s: Prepend normalizer needs a \"prepend\" string", what);
    m->type = NM_PREPEND;
    m->a = dup_bytes(s, n);
    m->a_len = n;
    if (!m->a) return oom();
  } else if (strcmp(type, "Replace") == 0) {
    int is_re;
    if ((st = parse_pattern(what, jget(o, "pattern"), &is_re, &s, &n))) return st;
    if (is_re) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: Replace normalizer with a regular expression is not supported", what);
    const char *c;
    size_t cn;
    if (!jstr(jget(o, "content"), &c, &cn)) return lrt_err(LRT_ERR_FORMAT, "%s: Replace normalizer needs a \"content\" string", what);
    m->type = NM_REPLACE;
    m->a = dup_bytes(s, n); m->a_len = n;
    m->b = dup_bytes(c, cn); m->b_len = cn;
    if (!m->a || !m->b) { free(m->a); free(m->b); m->a = m->b = NULL; return oom(); }
  } else if (strcmp(type, "NFC") == 0) {
    m->type = NM_NFC;
  } else if (strcmp(type, "NFD") == 0) {
    m->type = NM_NFD;
  } else {
    return unsupported(what, "normalizer", type);
  }
  t->n_nm++;
  return LRT_OK;
}

static int32_t parse_dec(lrt_tokenizer *t, const char *what, const lj_value *o, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: decoder must be an object or null", what);
  t->has_decoder = 1;
  const char *type = jtype(o);
  int32_t st;
  if (!type) return unsupported(what, "decoder", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "decoders");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence decoder needs a \"decoders\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: decoder sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_dec(t, what, &a->items[i], depth + 1))) return st;
    return LRT_OK;
  }
  if (t->n_dc >= TOK_MAX_STEPS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d decoder steps", what, TOK_MAX_STEPS);
  dc_step *d = &t->dc[t->n_dc];
  memset(d, 0, sizeof *d);
  const char *s;
  size_t n;
  if (strcmp(type, "ByteLevel") == 0) {
    d->type = DC_BYTELEVEL;
  } else if (strcmp(type, "Metaspace") == 0) {
    d->type = DC_METASPACE;
    if ((st = parse_metaspace_repl(what, o, &d->repl, NULL, NULL))) return st;
    if ((st = parse_prepend_scheme(what, o, &d->prepend))) return st;
  } else if (strcmp(type, "Replace") == 0) {
    int is_re;
    if ((st = parse_pattern(what, jget(o, "pattern"), &is_re, &s, &n))) return st;
    if (is_re) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: Replace decoder with a regular expression is not supported", what);
    const char *c;
    size_t cn;
    if (!jstr(jget(o, "content"), &c, &cn)) return lrt_err(LRT_ERR_FORMAT, "%s: Replace decoder needs a \"content\" string", what);
    d->type = DC_REPLACE;
    d->a = dup_bytes(s, n); d->a_len = n;
    d->b = dup_bytes(c, cn); d->b_len = cn;
    if (!d->a || !d->b) { free(d->a); free(d->b); d->a = d->b = NULL; return oom(); }
  } else if (strcmp(type, "ByteFallback") == 0) {
    d->type = DC_BYTEFALLBACK;
  } else if (strcmp(type, "Fuse") == 0) {
    d->type = DC_FUSE;
  } else if (strcmp(type, "Strip") == 0) {
    d->type = DC_STRIP;
    if (!jstr(jget(o, "content"), &s, &n) || !one_char(s, n))
      return lrt_err(LRT_ERR_FORMAT, "%s: Strip decoder needs a one-character \"content\"", what);
    const lj_value *a = jget(o, "start"), *b = jget(o, "stop");
    if (!a || !b || a->type != LJ_NUMBER || b->type != LJ_NUMBER || !a->is_integer || !b->is_integer ||
        a->integer < 0 || b->integer < 0)
      return lrt_err(LRT_ERR_FORMAT, "%s: Strip decoder needs non-negative integers \"start\" and \"stop\"", what);
    d->a = dup_bytes(s, n); d->a_len = n;
    if (!d->a) return oom();
    d->start = a->integer;
    d->stop = b->integer;
  } else {
    return unsupported(what, "decoder", type);
  }
  t->n_dc++;
  return LRT_OK;
}

/* Resolve a token string to an id for the post-processor (added tokens or vocabulary). */
static int32_t post_push(lrt_tokenizer *t, size_t *cap, int32_t id) {
  if (!grow((void **)&t->post, cap, t->n_post + 1, sizeof(int32_t))) return oom();
  t->post[t->n_post++] = id;
  return LRT_OK;
}

static int32_t check_post_id(const char *what, const lj_value *v, int32_t *id) {
  if (!v || v->type != LJ_NUMBER || !v->is_integer || v->integer < 0 || v->integer >= TOK_MAX_VOCAB)
    return lrt_err(LRT_ERR_FORMAT, "%s: post_processor token ids must be integers in [0, %d)", what, TOK_MAX_VOCAB);
  *id = (int32_t)v->integer;
  return LRT_OK;
}

static int32_t parse_post(lrt_tokenizer *t, const char *what, const lj_value *o, size_t *cap, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: post_processor must be an object or null", what);
  const char *type = jtype(o);
  int32_t st, id = 0;
  if (!type) return unsupported(what, "post_processor", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "processors");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence post_processor needs a \"processors\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: post_processor sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_post(t, what, &a->items[i], cap, depth + 1))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "ByteLevel") == 0) return LRT_OK; /* offsets only */
  if (t->has_post) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than one post_processor adding tokens", what);
  t->has_post = 1;
  if (strcmp(type, "TemplateProcessing") == 0) {
    const lj_value *single = jget(o, "single"), *sp = jget(o, "special_tokens");
    if (!single || single->type != LJ_ARRAY || (sp && sp->type != LJ_OBJECT && sp->type != LJ_NULL))
      return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing needs a \"single\" array and a \"special_tokens\" object", what);
    int seen_seq = 0;
    for (size_t i = 0; i < single->count; i++) {
      const lj_value *it = &single->items[i];
      if (it->type != LJ_OBJECT || it->count != 1)
        return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing items must be {\"SpecialToken\": ...} or {\"Sequence\": ...}", what);
      const lj_member *m = &it->members[0];
      const lj_value *idv = jget(&m->value, "id");
      if (!idv || idv->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing item needs an \"id\" string", what);
      if (strcmp(m->key, "Sequence") == 0) {
        if (strcmp(idv->str, "A") != 0 || seen_seq)
          return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing \"single\" must use sequence A once", what);
        seen_seq = 1;
        if ((st = post_push(t, cap, -1))) return st;
      } else if (strcmp(m->key, "SpecialToken") == 0) {
        const lj_value *e = sp && sp->type == LJ_OBJECT ? jget(sp, idv->str) : NULL;
        const lj_value *ids = e ? jget(e, "ids") : NULL;
        if (!ids || ids->type != LJ_ARRAY)
          return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing special token %.60s is missing from special_tokens", what, idv->str);
        for (size_t k = 0; k < ids->count; k++) {
          if ((st = check_post_id(what, &ids->items[k], &id))) return st;
          if ((st = post_push(t, cap, id))) return st;
        }
      } else {
        return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing item %.30s is not SpecialToken or Sequence", what, m->key);
      }
    }
    if (!seen_seq) return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing \"single\" does not contain sequence A", what);
    return LRT_OK;
  }
  if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
    const lj_value *cls = jget(o, "cls"), *sep = jget(o, "sep");
    if (!cls || !sep || cls->type != LJ_ARRAY || sep->type != LJ_ARRAY || cls->count != 2 || sep->count != 2)
      return lrt_err(LRT_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id]", what, type);
    if ((st = check_post_id(what, &cls->items[1], &id)) || (st = post_push(t, cap, id))) return st;
    if ((st = post_push(t, cap, -1))) return st;
    if ((st = check_post_id(what, &sep->items[1], &id)) || (st = post_push(t, cap, id))) return st;
    return LRT_OK;
  }
  return unsupported(what, "post_processor", type);
}

static int32_t parse_model(lrt_tokenizer *t, builder *b, const char *what, const lj_value *m, int32_t *st_out) {
  (void)st_out;
  if (!m || m->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: \"model\" must be an object", what);
  const char *type = jtype(m);
  if (type && strcmp(type, "BPE") != 0) return unsupported(what, "model", type);
  if (!type && !jget(m, "merges")) return unsupported(what, "model", NULL);
  const lj_value *v = jget(m, "vocab"), *mg = jget(m, "merges");
  if (!v || v->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: model.vocab must be an object", what);
  if (mg && mg->type != LJ_ARRAY && mg->type != LJ_NULL) return lrt_err(LRT_ERR_FORMAT, "%s: model.merges must be an array", what);
  const lj_value *drop = jget(m, "dropout");
  if (drop && drop->type != LJ_NULL && !(drop->type == LJ_NUMBER && drop->number == 0.0))
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: BPE dropout is random and not supported", what);
  const char *s;
  size_t n;
  if (jstr(jget(m, "continuing_subword_prefix"), &s, &n) && n)
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: BPE continuing_subword_prefix is not supported", what);
  if (jstr(jget(m, "end_of_word_suffix"), &s, &n) && n)
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: BPE end_of_word_suffix is not supported", what);
  int32_t st;
  if ((st = jbool(what, m, "fuse_unk", 0, &t->fuse_unk))) return st;
  if ((st = jbool(what, m, "byte_fallback", 0, &t->byte_fallback))) return st;
  if ((st = jbool(what, m, "ignore_merges", 0, &t->ignore_merges))) return st;
  const lj_value *u = jget(m, "unk_token");
  if (u && u->type != LJ_NULL) {
    if (u->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: model.unk_token must be a string or null", what);
    b->unk = u->str;
    b->unk_len = u->str_len;
  }
  b->n_vocab = v->count;
  b->vocab = (vocab_entry *)calloc(v->count + 1, sizeof(vocab_entry));
  if (!b->vocab) return oom();
  for (size_t i = 0; i < v->count; i++) {
    const lj_member *e = &v->members[i];
    if (e->value.type != LJ_NUMBER || !e->value.is_integer || e->value.integer < 0 || e->value.integer >= TOK_MAX_VOCAB)
      return lrt_err(LRT_ERR_FORMAT, "%s: model.vocab[%.60s] must be an integer id in [0, %d)", what, e->key, TOK_MAX_VOCAB);
    b->vocab[i].s = e->key;
    b->vocab[i].n = e->key_len;
    b->vocab[i].id = (int32_t)e->value.integer;
  }
  if (mg && mg->type == LJ_ARRAY) {
    b->n_merges = mg->count;
    b->merges = (merge_entry *)calloc(mg->count + 1, sizeof(merge_entry));
    if (!b->merges) return oom();
    for (size_t i = 0; i < mg->count; i++) {
      const lj_value *e = &mg->items[i];
      merge_entry *me = &b->merges[i];
      if (e->type == LJ_STRING) {
        const char *sp = memchr(e->str, ' ', e->str_len);
        if (!sp || memchr(sp + 1, ' ', e->str_len - (size_t)(sp + 1 - e->str)))
          return lrt_err(LRT_ERR_FORMAT, "%s: merge %zu \"%.60s\" is not of the form \"left right\"", what, i, e->str);
        me->a = e->str; me->na = (size_t)(sp - e->str);
        me->b = sp + 1; me->nb = e->str_len - me->na - 1;
      } else if (e->type == LJ_ARRAY && e->count == 2 && e->items[0].type == LJ_STRING && e->items[1].type == LJ_STRING) {
        me->a = e->items[0].str; me->na = e->items[0].str_len;
        me->b = e->items[1].str; me->nb = e->items[1].str_len;
      } else {
        return lrt_err(LRT_ERR_FORMAT, "%s: merge %zu must be \"left right\" or [left, right]", what, i);
      }
    }
  }
  return LRT_OK;
}

int32_t lrt_tok_from_json(const char *text, size_t len, const char *what, lrt_tokenizer **out) {
  *out = NULL;
  lj_doc *doc = NULL;
  int32_t st = lj_parse(text, len, what, &doc);
  if (st) return st;
  lrt_tokenizer *t = (lrt_tokenizer *)calloc(1, sizeof *t);
  builder b;
  memset(&b, 0, sizeof b);
  b.what = what;
  if (!t) { lj_free(doc); return oom(); }
  const lj_value *root = lj_root(doc);
  if (root->type != LJ_OBJECT || !jget(root, "model")) {
    st = lrt_err(LRT_ERR_FORMAT, "%s: not a HuggingFace tokenizer.json (no \"model\" section)", what);
    goto done;
  }
  if ((st = parse_model(t, &b, what, jget(root, "model"), NULL))) goto done;
  if ((st = parse_norm(t, what, jget(root, "normalizer"), 0))) goto done;
  if ((st = parse_pre(t, what, jget(root, "pre_tokenizer"), 0))) goto done;
  if ((st = parse_dec(t, what, jget(root, "decoder"), 0))) goto done;
  {
    size_t cap = 0;
    if ((st = parse_post(t, what, jget(root, "post_processor"), &cap, 0))) goto done;
  }
  {
    const lj_value *a = jget(root, "added_tokens");
    if (a && a->type != LJ_ARRAY && a->type != LJ_NULL) { st = lrt_err(LRT_ERR_FORMAT, "%s: \"added_tokens\" must be an array", what); goto done; }
    if (a && a->type == LJ_ARRAY) {
      b.added = (added_entry *)calloc(a->count + 1, sizeof(added_entry));
      if (!b.added) { st = oom(); goto done; }
      for (size_t i = 0; i < a->count; i++) {
        const lj_value *e = &a->items[i];
        added_entry *ae = &b.added[b.n_added];
        if (e->type != LJ_OBJECT || !jstr(jget(e, "content"), &ae->s, &ae->n)) {
          st = lrt_err(LRT_ERR_FORMAT, "%s: added_tokens[%zu] needs a \"content\" string", what, i);
          goto done;
        }
        int sp, ls, rs, sw, nm;
        if ((st = jbool(what, e, "special", 0, &sp)) || (st = jbool(what, e, "lstrip", 0, &ls)) ||
            (st = jbool(what, e, "rstrip", 0, &rs)) || (st = jbool(what, e, "single_word", 0, &sw)) ||
            (st = jbool(what, e, "normalized", !sp, &nm)))
          goto done;
        ae->special = (uint8_t)sp; ae->lstrip = (uint8_t)ls; ae->rstrip = (uint8_t)rs;
        ae->single_word = (uint8_t)sw; ae->normalized = (uint8_t)nm;
        b.n_added++;
      }
    }
  }
  st = finish(t, &b);
done:
  free(b.vocab);
  free(b.merges);
  free(b.added);
  lj_free(doc);
  if (st) { lrt_tok_free(t); return st; }
  *out = t;
  return LRT_OK;
}

/* ---- GGUF ------------------------------------------------------------------------------------- */

/* Texts llama.cpp treats as control / user-defined whatever their declared type
 * (mirrors loomrt/tokenizer.py). */
static const char *const k_forced_control[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|eom_id|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "</s>",
    "<eos>", "<turn|>", "<|tool_response>", "<end_of_utterance>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>",
    "<|prefix|>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>",
    "<|suffix|>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>",
    "<|middle|>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", NULL};
static const char *const k_forced_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

static int in_list(const char *const *list, const char *s, size_t n) {
  for (int i = 0; list[i]; i++)
    if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0) return 1;
  return 0;
}

/* pre-tokenizer families of loomrt/tokenizer.py that use only implemented expressions */
static const char *const k_gpt2_names[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                                          "a.x-4.0", "mellum", "modern-bert", "exaone4", "mpt", "olmo", "jais", "trillion",
                                          "granite-docling", NULL};
static const char *const k_llama3_names[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                            "midm-2.0", "lfm2", "jina-v5-nano", NULL};
static const char *const k_dbrx_names[] = {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe", NULL};
static const char *const k_qwen2_names[] = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2",
                                           "hunyuan", "solar-open", "grok-2", NULL};
static const char *const k_starcoder_names[] = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                                               "minerva-7b", "mellum2", NULL};

static int32_t gfail(const char *key, const char *problem) {
  return lrt_err(LRT_ERR_FORMAT, "GGUF metadata '%s': %s; re-convert the model with a current llama.cpp", key, problem);
}

static int32_t g_str(const lrt_gguf_file *g, const char *key, const char **s, size_t *n) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) { *s = NULL; *n = 0; return LRT_OK; }
  if (kv->type != LRT_META_STRING) return gfail(key, "expected a string");
  *s = kv->strs[0];
  *n = (size_t)kv->str_lens[0];
  return LRT_OK;
}

static int32_t g_bool(const lrt_gguf_file *g, const char *key, int *out) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) return LRT_OK; /* keep the default */
  if (kv->type != LRT_META_BOOL) return gfail(key, "expected a bool");
  int64_t v;
  if (lrt_gguf_kv_int(kv, 0, &v)) return gfail(key, "bad bool");
  *out = v != 0;
  return LRT_OK;
}

static int32_t g_id(const lrt_gguf_file *g, const char *key, int64_t n_tokens, int32_t *out) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) return LRT_OK;
  int64_t v;
  if (kv->type == LRT_META_ARRAY || kv->type == LRT_META_STRING || kv->type == LRT_META_BOOL ||
      kv->type == LRT_META_FLOAT32 || kv->type == LRT_META_FLOAT64 || lrt_gguf_kv_int(kv, 0, &v))
    return gfail(key, "expected an integer token id");
  if (v < 0 || v >= n_tokens) return gfail(key, "token id is outside the vocabulary");
  *out = (int32_t)v;
  return LRT_OK;
}

typedef struct cand { double neg_score; int32_t tid; int32_t cut; } cand;
static int cmp_cand(const void *a, const void *b) {
  const cand *x = (const cand *)a, *y = (const cand *)b;
  if (x->neg_score != y->neg_score) return x->neg_score < y->neg_score ? -1 : 1;
  if (x->tid != y->tid) return x->tid < y->tid ? -1 : 1;
  return x->cut < y->cut ? -1 : x->cut > y->cut;
}
typedef struct score_owner { double s; int32_t tid; } score_owner;
static int cmp_owner(const void *a, const void *b) {
  const score_owner *x = (const score_owner *)a, *y = (const score_owner *)b;
  if (x->s != y->s) return x->s < y->s ? -1 : 1;
  return x->tid < y->tid ? -1 : x->tid > y->tid;
}

int32_t lrt_tok_from_gguf(const lrt_gguf_file *g, lrt_tokenizer **out) {
  *out = NULL;
  const char *model;
  size_t model_len;
  int32_t st = g_str(g, "tokenizer.ggml.model", &model, &model_len);
  if (st) return st;
  const lrt_gguf_kv *tk = lrt_gguf_find(g, "tokenizer.ggml.tokens");
  if (!model && !tk) return lrt_err(LRT_ERR_NOT_FOUND, "the GGUF file has no tokenizer metadata");
  if (!model) return gfail("tokenizer.ggml.model", "missing");
  if (!tk) return gfail("tokenizer.ggml.tokens", "missing");
  if (tk->type != LRT_META_ARRAY || tk->elem_type != LRT_META_STRING || tk->count < 1)
    return gfail("tokenizer.ggml.tokens", "expected a non-empty array of strings");
  if (tk->count >= TOK_MAX_VOCAB) return gfail("tokenizer.ggml.tokens", "too many tokens");
  int is_gpt2 = model_len == 4 && memcmp(model, "gpt2", 4) == 0;
  int is_llama = model_len == 5 && memcmp(model, "llama", 5) == 0;
  if (!is_gpt2 && !is_llama)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF tokenizer model '%.40s' is not supported (supported: 'gpt2', 'llama')",
                   model);
  int64_t n = (int64_t)tk->count;
  lrt_tokenizer *t = (lrt_tokenizer *)calloc(1, sizeof *t);
  builder b;
  memset(&b, 0, sizeof b);
  b.what = "GGUF metadata";
  char *names = NULL; /* "[EMPTY_i]" replacements */
  int32_t *types = NULL;
  double *scores = NULL;
  cand *cands = NULL;
  score_owner *owners = NULL;
  if (!t) return oom();
  b.vocab = (vocab_entry *)calloc((size_t)n, sizeof(vocab_entry));
  types = (int32_t *)malloc((size_t)n * sizeof(int32_t));
  names = (char *)malloc((size_t)n * 20);
  if (!b.vocab || !types || !names) { st = oom(); goto done; }
  for (int64_t i = 0; i < n; i++) {
    b.vocab[i].id = (int32_t)i;
    if (tk->str_lens[i] == 0) {
      int l = snprintf(names + i * 20, 20, "[EMPTY_%lld]", (long long)i);
      b.vocab[i].s = names + i * 20;
      b.vocab[i].n = (size_t)l;
    } else {
      b.vocab[i].s = tk->strs[i];
      b.vocab[i].n = (size_t)tk->str_lens[i];
    }
    types[i] = 1;
  }
  b.n_vocab = (size_t)n;
  {
    const lrt_gguf_kv *tt = lrt_gguf_find(g, "tokenizer.ggml.token_type");
    if (tt) {
      if (tt->type != LRT_META_ARRAY || tt->elem_type == LRT_META_STRING || tt->elem_type == LRT_META_BOOL ||
          tt->elem_type == LRT_META_FLOAT32 || tt->elem_type == LRT_META_FLOAT64)
        { st = gfail("tokenizer.ggml.token_type", "expected an array of integers"); goto done; }
      if ((int64_t)tt->count < n) { st = gfail("tokenizer.ggml.token_type", "has fewer entries than tokenizer.ggml.tokens"); goto done; }
      for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (lrt_gguf_kv_int(tt, (uint64_t)i, &v)) { st = gfail("tokenizer.ggml.token_type", "bad element"); goto done; }
        types[i] = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
      }
    }
  }
  /* added tokens: user-defined then special (control / unknown / forced), raw text */
  b.added = (added_entry *)calloc((size_t)n + 1, sizeof(added_entry));
  if (!b.added) { st = oom(); goto done; }
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < n; i++) {
      const char *s = b.vocab[i].s;
      size_t l = b.vocab[i].n;
      int user = 0, special = 0;
      if (in_list(k_forced_user, s, l)) user = 1;
      else if (types[i] == 3 || types[i] == 2 || in_list(k_forced_control, s, l)) special = 1;
      else if (types[i] == 4) user = 1;
      if ((pass == 0 && user) || (pass == 1 && special)) {
        added_entry *e = &b.added[b.n_added++];
        e->s = s; e->n = l; e->special = (uint8_t)special; e->normalized = 0;
      }
    }
  int add_bos = 0, add_eos = 0;
  int32_t bos = -1, eos = -1;
  size_t post_cap = 0;
  if (is_gpt2) {
    const lrt_gguf_kv *mk = lrt_gguf_find(g, "tokenizer.ggml.merges");
    if (!mk) { st = gfail("tokenizer.ggml.merges", "missing"); goto done; }
    if (mk->type != LRT_META_ARRAY || mk->elem_type != LRT_META_STRING) { st = gfail("tokenizer.ggml.merges", "expected an array of strings"); goto done; }
    b.merges = (merge_entry *)calloc(mk->count + 1, sizeof(merge_entry));
    if (!b.merges) { st = oom(); goto done; }
    for (uint64_t i = 0; i < mk->count; i++) {
      const char *s = mk->strs[i];
      size_t l = (size_t)mk->str_lens[i];
      const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
      if (!sp) { st = lrt_err(LRT_ERR_FORMAT, "GGUF metadata 'tokenizer.ggml.merges': entry %llu is not of the form 'left right'", (unsigned long long)i); goto done; }
      merge_entry *me = &b.merges[b.n_merges++];
      me->a = s; me->na = (size_t)(sp - s);
      me->b = sp + 1; me->nb = l - me->na - 1;
    }
    b.merges_keep_first = 1;
    b.unk_drop = 1; /* byte symbols missing from the vocabulary block merges, then vanish */
    const char *pre;
    size_t pre_len;
    if ((st = g_str(g, "tokenizer.ggml.pre", &pre, &pre_len))) goto done;
    char pname[64];
    if (!pre) snprintf(pname, sizeof pname, "default");
    else snprintf(pname, sizeof pname, "%.*s", (int)(pre_len < 63 ? pre_len : 63), pre);
    int pats[3] = {0}, np = 0;
    if (in_list(k_gpt2_names, pname, strlen(pname))) { pats[np++] = PAT_GPT2; }
    else if (in_list(k_llama3_names, pname, strlen(pname))) { pats[np++] = PAT_LLAMA3; t->ignore_merges = 1; add_bos = 1; }
    else if (in_list(k_dbrx_names, pname, strlen(pname))) { pats[np++] = PAT_LLAMA3; }
    else if (in_list(k_qwen2_names, pname, strlen(pname))) { pats[np++] = PAT_QWEN2; }
    else if (in_list(k_starcoder_names, pname, strlen(pname))) { pats[np++] = PAT_N1; pats[np++] = PAT_GPT2; }
    else { st = lrt_err(LRT_ERR_UNSUPPORTED, "GGUF pre-tokenizer type '%s' is not supported by the C tokenizer", pname); goto done; }
    for (int i = 0; i < np; i++) {
      pt_step *p = NULL;
      if ((st = add_pt(t, "GGUF metadata", &p))) goto done;
      p->type = PT_SPLIT; p->pat = pats[i]; p->ci = 2; p->behavior = BEH_ISOLATED;
    }
    pt_step *p = NULL;
    if ((st = add_pt(t, "GGUF metadata", &p))) goto done;
    p->type = PT_BYTELEVEL; p->add_prefix_space = 0; p->use_regex = 0;
    t->has_decoder = 1;
    t->dc[t->n_dc++].type = DC_BYTELEVEL;
  } else {
    /* SentencePiece vocabulary: merges from scores, as loomrt/tokenizer.py derives them */
    scores = (double *)calloc((size_t)n, sizeof(double));
    if (!scores) { st = oom(); goto done; }
    const lrt_gguf_kv *sk = lrt_gguf_find(g, "tokenizer.ggml.scores");
    if (sk) {
      if (sk->type != LRT_META_ARRAY || sk->elem_type == LRT_META_STRING || sk->elem_type == LRT_META_BOOL)
        { st = gfail("tokenizer.ggml.scores", "expected an array of numbers"); goto done; }
      if ((int64_t)sk->count < n) { st = gfail("tokenizer.ggml.scores", "has fewer entries than tokenizer.ggml.tokens"); goto done; }
      for (int64_t i = 0; i < n; i++) {
        double v;
        if (lrt_gguf_kv_float(sk, (uint64_t)i, &v) || v != v || v > 1e308 || v < -1e308)
          { st = gfail("tokenizer.ggml.scores", "contains NaN, infinite or bad scores"); goto done; }
        scores[i] = v;
      }
    }
    size_t nc = 0, cc = 0;
    t->n_ids = 0;
    /* a temporary vocabulary hash to find splits: build via finish() later; here a local one */
    size_t hc = 16;
    while (hc < 2 * (size_t)n + 16) hc *= 2;
    int32_t *h = (int32_t *)malloc(hc * sizeof(int32_t));
    if (!h) { st = oom(); goto done; }
    memset(h, 0xFF, hc * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) {
      size_t j = (size_t)hash_bytes(b.vocab[i].s, b.vocab[i].n) & (hc - 1);
      int dup = 0;
      while (h[j] >= 0) {
        const vocab_entry *o = &b.vocab[h[j]];
        if (o->n == b.vocab[i].n && memcmp(o->s, b.vocab[i].s, o->n) == 0) { dup = 1; break; }
        j = (j + 1) & (hc - 1);
      }
      if (dup) { free(h); st = lrt_err(LRT_ERR_FORMAT, "GGUF metadata 'tokenizer.ggml.tokens': duplicate token at id %lld", (long long)i); goto done; }
      h[j] = (int32_t)i;
    }
#define HFIND(S, L, OUT)                                                                  \
  do {                                                                                    \
    size_t j_ = (size_t)hash_bytes((S), (L)) & (hc - 1);                                  \
    (OUT) = -1;                                                                           \
    while (h[j_] >= 0) {                                                                  \
      const vocab_entry *o_ = &b.vocab[h[j_]];                                            \
      if (o_->n == (L) && memcmp(o_->s, (S), (L)) == 0) { (OUT) = h[j_]; break; }         \
      j_ = (j_ + 1) & (hc - 1);                                                           \
    }                                                                                     \
  } while (0)
    owners = (score_owner *)malloc((size_t)n * sizeof(score_owner));
    if (!owners) { free(h); st = oom(); goto done; }
    size_t n_own = 0;
    for (int64_t i = 0; i < n; i++) {
      const char *s = b.vocab[i].s;
      size_t l = b.vocab[i].n;
      int kind = types[i];
      if ((kind == 3 || kind == 2 || kind == 4) && !(l >= 3 && has_bytes(s, l, "\xE2\x96\x81", 3))) continue;
      if (l > 1024) continue; /* bounds the work on hostile files (no real vocabulary has such pieces) */
      int found = 0;
      for (size_t cut = 1; cut < l; cut++) {
        if (((uint8_t)s[cut] & 0xC0) == 0x80) continue;
        int32_t a, c;
        HFIND(s, cut, a);
        if (a < 0) continue;
        HFIND(s + cut, l - cut, c);
        if (c < 0) continue;
        if (!grow((void **)&cands, &cc, nc + 1, sizeof(cand))) { free(h); st = oom(); goto done; }
        cands[nc].neg_score = -scores[i];
        cands[nc].tid = (int32_t)i;
        cands[nc].cut = (int32_t)cut;
        nc++;
        found = 1;
      }
      if (found) { owners[n_own].s = scores[i]; owners[n_own].tid = (int32_t)i; n_own++; }
    }
    free(h);
#undef HFIND
    qsort(owners, n_own, sizeof *owners, cmp_owner);
    for (size_t i = 1; i < n_own; i++)
      if (owners[i].s == owners[i - 1].s) {
        st = lrt_err(LRT_ERR_UNSUPPORTED, "GGUF SentencePiece vocabulary with equal merge scores (tokens %d and %d): "
                     "llama.cpp's leftmost tie-breaking is not implemented by the C tokenizer",
                     (int)owners[i - 1].tid, (int)owners[i].tid);
        goto done;
      }
    if (nc > 1) qsort(cands, nc, sizeof *cands, cmp_cand); /* cands is NULL when nc == 0 */
    b.merges = (merge_entry *)calloc(nc + 1, sizeof(merge_entry));
    if (!b.merges) { st = oom(); goto done; }
    for (size_t i = 0; i < nc; i++) {
      const vocab_entry *e = &b.vocab[cands[i].tid];
      merge_entry *me = &b.merges[b.n_merges++];
      me->a = e->s; me->na = (size_t)cands[i].cut;
      me->b = e->s + cands[i].cut; me->nb = e->n - (size_t)cands[i].cut;
    }
    b.merges_keep_first = 0;
    int32_t unk = -1;
    if ((st = g_id(g, "tokenizer.ggml.unknown_token_id", n, &unk))) goto done;
    if (unk < 0)
      for (int64_t i = 0; i < n; i++) if (types[i] == 2) { unk = (int32_t)i; break; }
    if (unk >= 0) { b.unk = b.vocab[unk].s; b.unk_len = b.vocab[unk].n; }
    t->fuse_unk = 1;
    t->byte_fallback = 1;
    int add_prefix = 1;
    if ((st = g_bool(g, "tokenizer.ggml.add_space_prefix", &add_prefix))) goto done;
    nm_step *m;
    if (add_prefix) {
      m = &t->nm[t->n_nm++];
      m->type = NM_PREPEND;
      m->a = dup_bytes("\xE2\x96\x81", 3); m->a_len = 3;
      if (!m->a) { st = oom(); goto done; }
    }
    m = &t->nm[t->n_nm++];
    m->type = NM_REPLACE;
    m->a = dup_bytes(" ", 1); m->a_len = 1;
    m->b = dup_bytes("\xE2\x96\x81", 3); m->b_len = 3;
    if (!m->a || !m->b) { st = oom(); goto done; }
    t->has_decoder = 1;
    dc_step *d = &t->dc[t->n_dc++];
    d->type = DC_REPLACE;
    d->a = dup_bytes("\xE2\x96\x81", 3); d->a_len = 3;
    d->b = dup_bytes(" ", 1); d->b_len = 1;
    if (!d->a || !d->b) { st = oom(); goto done; }
    t->dc[t->n_dc++].type = DC_BYTEFALLBACK;
    t->dc[t->n_dc++].type = DC_FUSE;
    if (add_prefix) {
      d = &t->dc[t->n_dc++];
      d->type = DC_STRIP;
      d->a = dup_bytes(" ", 1); d->a_len = 1;
      if (!d->a) { st = oom(); goto done; }
      d->start = 1;
      d->stop = 0;
    }
    add_bos = 1;
    bos = n > 1 ? 1 : -1;
    eos = n > 2 ? 2 : -1;
  }
  if ((st = g_id(g, "tokenizer.ggml.bos_token_id", n, &bos))) goto done;
  if ((st = g_id(g, "tokenizer.ggml.eos_token_id", n, &eos))) goto done;
  if ((st = g_bool(g, "tokenizer.ggml.add_bos_token", &add_bos))) goto done;
  if ((st = g_bool(g, "tokenizer.ggml.add_eos_token", &add_eos))) goto done;
  if (add_bos && bos < 0) { st = gfail("tokenizer.ggml.bos_token_id", "missing although add_bos_token is true"); goto done; }
  if (add_eos && eos < 0) { st = gfail("tokenizer.ggml.eos_token_id", "missing although add_eos_token is true"); goto done; }
  t->has_post = 1;
  if (add_bos && (st = post_push(t, &post_cap, bos))) goto done;
  if ((st = post_push(t, &post_cap, -1))) goto done;
  if (add_eos && (st = post_push(t, &post_cap, eos))) goto done;
  st = finish(t, &b);
done:
  free(b.vocab); free(b.merges); free(b.added);
  free(names); free(types); free(scores); free(cands); free(owners);
  if (st) { lrt_tok_free(t); return st; }
  *out = t;
  return LRT_OK;
}
