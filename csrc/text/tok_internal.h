/* tok_internal.h -- what the files of the C tokenizer share: the tokenizer structure, the
 * builder both loaders fill, the per-call encoding context and the helpers used by more than
 * one file (lrt_tok_*, internal to the tokenizer). The rest of the library sees only
 * tokenizer.h.
 *
 * Text <-> token ids in C, agreeing with HuggingFace `tokenizers`. One engine runs the
 * pipeline of a HuggingFace tokenizer.json:
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
 *      GGUF SentencePiece vocabularies merge by entry score as llama.cpp does instead;
 *   5. post-processor (TemplateProcessing, Bert/Roberta, ByteLevel) with
 *      LRT_TOKENIZE_ADD_SPECIAL.
 *
 * The files, one per stage as tokenizers lays out its crate:
 *
 *   tok_encode.c       the encode driver: added-token split (1), post-processor template (5)
 *   tok_normalize.c    normalizers (2)
 *   tok_pretokenize.c  pre-tokenizers: the hand-written pattern matchers and splitting (3)
 *   tok_bpe.c          the BPE model: vocabulary / merge lookups and the merge loop (4)
 *   tok_decode.c       decoders, and the bytes of each token
 *   tok_load_json.c    loader of tokenizer.json
 *   tok_load_gguf.c    loader of GGUF tokenizer.ggml.* metadata
 *   tok_build.c        what both loaders share: adding steps, finishing, freeing
 *   tok_util.c         arrays, UTF-8, Unicode classes, GPT-2 byte mapping (byte buffer: here)
 *
 * All input is untrusted: sizes, ids, types and UTF-8 are checked; nothing aborts. The
 * tokenizer is immutable after loading, so one model can tokenize from many threads. */
#ifndef LOOMRT_TOK_INTERNAL_H
#define LOOMRT_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tokenizer.h"

#define TOK_MAX_VOCAB (1 << 24)      /* ids must stay below this                       */
#define TOK_MAX_STEPS 8              /* pre-tokenizer / normalizer / decoder steps      */

/* ---- Unicode classes (tok_util.c) --------------------------------------------------------- */

enum { UC_OTHER = 0, UC_L = 1, UC_N = 2, UC_M = 3 };

/* ---- GPT-2 byte <-> unicode mapping (tok_util.c) ------------------------------------------ */

typedef struct byte_tables {
  char enc[256][2];
  uint8_t enc_len[256];
  int16_t dec[324]; /* code point -> byte, -1 */
} byte_tables;

/* ---- the tokenizer structure -------------------------------------------------------------- */

/* Pre-tokenizer split expressions with hand-written matchers. */
enum {
  PAT_LITERAL = 0, /* a plain string pattern                                 */
  PAT_GPT2,        /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
  PAT_LLAMA3,      /* contractions|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
  PAT_QWEN2,       /* the same with \p{N} */
  PAT_N1,          /* \p{N} */
  PAT_N3,          /* \p{N}{1,3} */
  PAT_NPLUS,       /* \p{N}+ */
  PAT_PUNCT,       /* [\p{P}\$\+<=>\^~\|]+   (llama.cpp's "default" pre-tokenizer)  */
  PAT_PUNCT_TICK,  /* [\p{P}\$\+<=>\^~\|`]+  ("falcon")                           */
  PAT_DIGIT3       /* [0-9][0-9][0-9]                                                 */
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

typedef struct added_content { size_t off, n; int32_t id; } added_content;

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
  /* GGUF SentencePiece ("llama") vocabularies: llama.cpp's merge rule instead of ranked
   * merges -- adjacent symbols whose concatenation is a vocabulary entry merge, highest
   * entry score first, leftmost on equal scores (tok_bpe.c). score[id] for every id. */
  int spm;
  double *score;
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
  /* lrt_token_id: the raw contents of the added tokens -> id (tokenizers' added_tokens_map);
   * lrt_token_text reads off / pool above */
  char *ac_pool;
  added_content *ac;       /* sorted by content */
  size_t n_ac;
};

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

/* a growing byte buffer */
typedef struct sbuf { char *p; size_t n, cap; } sbuf;

/* ---- encoding context (per call; the tokenizer itself is read-only) -------------------- */

typedef struct level {
  uint32_t *cp; size_t cp_cap;
  size_t *coff; size_t coff_cap; /* byte offset of each char, +1 */
  size_t *seg; size_t seg_cap;   /* (start, end, is_match) triples */
  sbuf buf;
} level;

typedef struct sym { int32_t id, prev, next, len; } sym;
typedef struct mq { int32_t rank, pos, id; } mq;
typedef struct bigram { double score; int32_t left, right, size; } bigram; /* SentencePiece queue */

typedef struct enc_ctx {
  const lrt_tokenizer *t;
  int32_t *out; size_t n_out, out_cap;
  level lv[TOK_MAX_STEPS + 2];
  sym *sy; size_t sy_cap;
  mq *q; size_t q_cap;
  bigram *bg; size_t bg_cap;
  sbuf norm, tmp;
  size_t *aseg; size_t aseg_cap; /* added-token split: (start, end, id) */
  size_t *aseg2; size_t aseg2_cap;
} enc_ctx;

/* ---- helpers shared between the files, by the file that defines them --------------------- */

/* tok_util.c */
int lrt_tok_grow(void **p, size_t *cap, size_t need, size_t size); /* 0 on OOM */
uint32_t lrt_tok_u8_dec(const uint8_t *s, size_t n, size_t i, int *len);
int lrt_tok_u8_enc(uint32_t cp, char *o);
int32_t lrt_tok_oom(void); /* sets and returns LRT_ERR_OUT_OF_MEMORY */
int lrt_tok_uc_class(uint32_t cp); /* UC_* */
int lrt_tok_uc_space(uint32_t c);
int lrt_tok_uc_punct(uint32_t c); /* \p{P} */
int lrt_tok_uc_word(uint32_t c);
void lrt_tok_byte_tables_init(byte_tables *bt);

/* Append n bytes to a byte buffer (kept NUL-terminable); 0 on OOM. Defined here, inline, so
 * the decoder and pre-tokenizer loops inline it as they did when it was static in one file. */
static inline int lrt_tok_sb_put(sbuf *b, const char *s, size_t n) {
  if (!lrt_tok_grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return 0;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  return 1;
}

/* tok_bpe.c */
uint64_t lrt_tok_hash_bytes(const char *s, size_t n);
uint64_t lrt_tok_hash_pair(uint64_t k);
int32_t lrt_tok_vocab_find(const lrt_tokenizer *t, const char *s, size_t n); /* model vocab id, -1 */
int32_t lrt_tok_bpe_word(enc_ctx *c, const char *s, size_t n); /* ids of one piece -> c->out */

/* tok_build.c */
int32_t lrt_tok_add_pt(lrt_tokenizer *t, const char *what, pt_step **out);
int32_t lrt_tok_post_push(lrt_tokenizer *t, size_t *cap, int32_t id);
int32_t lrt_tok_finish(lrt_tokenizer *t, builder *b); /* the loaders' last step */

/* tok_normalize.c */
int32_t lrt_tok_normalize(const lrt_tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp);

/* tok_pretokenize.c */
int lrt_tok_seg_push(size_t **seg, size_t *cap, size_t *n, size_t a, size_t b, size_t m);
int32_t lrt_tok_pretok(enc_ctx *c, int step, const char *s, size_t n, int at_origin); /* from `step` on */

/* tok_encode.c */
int lrt_tok_push_id(enc_ctx *c, int32_t id);

/* tok_decode.c */
int32_t lrt_tok_compute_token_bytes(lrt_tokenizer *t); /* for lrt_tok_token_bytes */

#endif
