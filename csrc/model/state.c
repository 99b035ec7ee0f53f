/* state.c -- save and restore a session's state (KV cache, position, token history, last
 * logits, sampler settings and candidates) as a portable, versioned, self-checking blob.
 *
 * Blob layout, every field little-endian whatever the host, no padding:
 *
 *   off  size  field
 *     0     8  magic "LRTSTATE"
 *     8     4  u32 blob format version (1, or 2 for a session with sliding-window rings)
 *    12     4  u32 numerics version (LRT_NUMERICS_VERSION of the writer)
 *    16     8  u64 total length of the blob in bytes (trailer included)
 *    24    16  model fingerprint (two u64, see model_fingerprint below)
 *    40     8  i64 vocab size
 *    48     8  i64 layers
 *    56     8  i64 KV row width (kv heads x head dim)
 *    64     8  i64 position P (tokens in the KV cache)
 *    72     8  i64 logits rows R (0 when there are no logits; else 1 <= R <= P)
 *    80     8  i64 candidates C of the last sample call (0 .. vocab)
 *    88    32  f64 temperature, top_p, min_p, repeat_penalty (IEEE bits)
 *   120    24  i64 top_k, i64 repeat_last_n, u64 seed
 *   144     8  i64 max_tokens (LRT_PARAM_MAX_TOKENS, -1 = none)
 *  (version 2 only:)
 *   152     8  i64 Q: the oldest position the sliding-window layers hold (0 <= Q <= P)
 *   152/160    i32 token history [P]
 *              f32 logits [R x vocab]
 *              i32 candidate ids [C], f32 candidate probabilities [C]
 *              per layer: f32 K rows [N x kv], f32 V rows [N x kv] of positions P - N .. P - 1
 *                         (N = P; version 2: N = P - Q for a sliding-window layer)
 *   len-16 16  checksum (two u64) of bytes [0, len - 16)
 *
 * A session whose windowed layers keep a ring (model.h) writes version 2 and only the
 * positions its rings hold; every other session writes version 1, as before. Both load into
 * any session of the model: a ring takes the newest positions that fit it.
 *
 * The loader treats the blob as untrusted: every field is range-checked before anything in
 * the session changes, so a rejected blob leaves the session as it was. */
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "model.h"

#define LRT_STATE_FORMAT 2u /* the newest version read and written */
#define HEADER_BYTES 152u    /* version 1; version 2 has 8 more */
#define TRAILER_BYTES 16u
static const char MAGIC[8] = {'L', 'R', 'T', 'S', 'T', 'A', 'T', 'E'};

/* ---- a 128-bit non-cryptographic hash over 64-bit words ------------------------------- */

static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

typedef struct hash128 { uint64_t a, b, n; } hash128;

static void h_init(hash128 *h, uint64_t domain) {
  h->a = mix64(domain ^ 0x6c6f6f6d72742d61ull);
  h->b = mix64(domain ^ 0x6c6f6f6d72742d62ull);
  h->n = 0;
}
static void h_word(hash128 *h, uint64_t w) {
  h->a = mix64(h->a ^ w);
  h->b = mix64(h->b + (w ^ 0xa0761d6478bd642full)) ^ (h->b >> 17);
  h->n++;
}
/* Bytes in groups of 8 (little-endian), the tail zero-padded; the length is mixed in. */
static void h_bytes(hash128 *h, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) h_word(h, lrt_rd_u64le(p + i));
  if (i < n) {
    uint8_t t[8] = {0};
    memcpy(t, p + i, n - i);
    h_word(h, lrt_rd_u64le(t));
  }
  h_word(h, (uint64_t)n);
}
static void h_final(const hash128 *h, uint64_t out[2]) {
  out[0] = mix64(h->a ^ mix64(h->n));
  out[1] = mix64(h->b ^ out[0]);
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static uint64_t f64_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}

/* ---- model fingerprint ----------------------------------------------------------------- */

/* Floats of a vector by value (host-independent). */
static void h_floats(hash128 *h, const float *v, int64_t n) {
  h_word(h, v ? (uint64_t)n : 0xffffffffffffffffull);
  if (!v) return;
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) h_word(h, (uint64_t)f32_bits(v[i]) | ((uint64_t)f32_bits(v[i + 1]) << 32));
  if (i < n) h_word(h, f32_bits(v[i]));
}

/* Up to 8 rows of a weight matrix (first, last, six evenly spaced), each by the values of its
 * elements: float bits for F32 and the block formats (dequantized), 16-bit patterns for F16
 * and BF16. `tmp` holds one row of floats. */
static void h_mat(hash128 *h, const lrt_mat *w, float *tmp) {
  h_word(h, (uint64_t)w->dtype);
  h_word(h, (uint64_t)w->rows);
  h_word(h, (uint64_t)w->cols);
  if (!w->data || w->rows < 1) return;
  const lrt_kernels *k = lrt_kernels_get();
  size_t rb = lrt_mat_row_bytes(w);
  int64_t picks = w->rows < 8 ? w->rows : 8;
  for (int64_t j = 0; j < picks; j++) {
    int64_t r = picks == 1 ? 0 : j * (w->rows - 1) / (picks - 1);
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
    h_word(h, (uint64_t)r);
    switch (w->dtype) {
      case LRT_DT_F32: h_floats(h, (const float *)(const void *)row, w->cols); break;
      case LRT_DT_F16: case LRT_DT_BF16: {
        const uint16_t *p = (const uint16_t *)(const void *)row;
        int64_t i = 0;
        for (; i + 4 <= w->cols; i += 4)
          h_word(h, (uint64_t)p[i] | ((uint64_t)p[i + 1] << 16) | ((uint64_t)p[i + 2] << 32) | ((uint64_t)p[i + 3] << 48));
        for (; i < w->cols; i++) h_word(h, p[i]);
        break;
      }
      case LRT_DT_Q8_0: k->dequant_q8_0(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q4_0: k->dequant_q4_0(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q4_1: k->dequant_q4_1(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q4_K: k->dequant_q4_k(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q5_K: k->dequant_q5_k(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q6_K: k->dequant_q6_k(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q5_0: k->dequant_q5_0(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      case LRT_DT_Q5_1: k->dequant_q5_1(row, tmp, w->cols); h_floats(h, tmp, w->cols); break;
      default: h_bytes(h, row, rb); break;
    }
  }
}

static void h_perm(hash128 *h, const int32_t *p, int64_t n) {
  h_word(h, p ? (uint64_t)n : 0xffffffffffffffffull);
  if (p)
    for (int64_t i = 0; i < n; i++) h_word(h, (uint32_t)p[i]);
}

/* Identity of a model for the state check: the whole configuration, every small float vector
 * (norms, biases, RoPE frequencies) in full, and 8 rows of every weight matrix. Cheap (a few
 * milliseconds on a 135M model) and independent of host, container format details and
 * kernel path; it tells models apart, it is not a content hash of the files. */
static int32_t model_fingerprint(const lrt_model *m, uint64_t out[2]) {
  const lrt_config *c = &m->cfg;
  int64_t maxc = c->dim;
  if (c->ffn > maxc) maxc = c->ffn;
  if (c->n_heads * c->head_dim > maxc) maxc = c->n_heads * c->head_dim;
  if (c->vocab > maxc) maxc = c->vocab;
  float *tmp = (float *)malloc((size_t)maxc * sizeof(float));
  if (!tmp) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  hash128 h;
  h_init(&h, 1);
  h_bytes(&h, (const uint8_t *)c->arch_name, strlen(c->arch_name));
  int64_t ints[] = {c->arch, c->vocab, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn,
                    c->ctx, c->layernorm, c->gelu, c->learned_pos, c->rope_llama3, c->sliding_window,
                    c->tied, c->qkv_bias, c->o_bias, c->mlp_bias};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) h_word(&h, (uint64_t)ints[i]);
  h_word(&h, f32_bits(c->norm_eps));
  /* the int8-activation mode computes other numbers from the same weights: its KV cache does
   * not belong to the exact mode (only mixed in when set, so exact fingerprints stay as they were) */
  if (m->open_flags & LRT_OPEN_INT8_ACTIVATIONS) h_word(&h, 0x696e743861637473ull); /* "int8acts" */
  double dbl[] = {c->rope_theta, c->rope_factor, c->rope_low_freq, c->rope_high_freq, c->rope_orig_ctx};
  for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) h_word(&h, f64_bits(dbl[i]));
  h_mat(&h, &m->tok_embd, tmp);
  h_mat(&h, &m->pos_embd, tmp);
  h_mat(&h, &m->lm_head, tmp);
  h_floats(&h, m->out_norm, c->dim);
  h_floats(&h, m->out_norm_b, c->dim);
  h_floats(&h, m->rope_inv_freq, m->rope_inv_freq ? c->rotary_dim / 2 : 0);
  if (c->arch >= LRT_ARCH_QWEN3) { /* the newer families' settings (mixed in only for them, so
                                      older models' fingerprints stay as they were) */
    int64_t more[] = {c->qk_norm, c->norm_plus_one, c->pre_norms, c->post_norms, c->geglu, c->fused_qkv,
                      c->rotary_dim, c->rope_longrope, c->any_sliding};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) h_word(&h, (uint64_t)more[i]);
    float fl[] = {c->embed_scale, c->attn_softcap, c->final_softcap, c->attn_scale};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) h_word(&h, f32_bits(fl[i]));
    double db[] = {c->rope_local_theta, c->rope_linear, c->rope_attn_factor};
    for (size_t i = 0; i < sizeof db / sizeof db[0]; i++) h_word(&h, f64_bits(db[i]));
    h_bytes(&h, c->layer_kind, (size_t)c->n_layers);
    h_floats(&h, m->rope_inv_freq_long, m->rope_inv_freq_long ? c->rotary_dim / 2 : 0);
    h_floats(&h, m->rope_inv_freq_local, m->rope_inv_freq_local ? c->rotary_dim / 2 : 0);
  }
  int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  for (int64_t l = 0; l < c->n_layers; l++) {
    const lrt_layer *L = &m->layers[l];
    h_word(&h, (uint64_t)l);
    h_floats(&h, L->attn_norm, c->dim);
    h_floats(&h, L->attn_norm_b, c->dim);
    h_floats(&h, L->ffn_norm, c->dim);
    h_floats(&h, L->ffn_norm_b, c->dim);
    h_floats(&h, L->bq, qd);
    h_floats(&h, L->bk, kvd);
    h_floats(&h, L->bv, kvd);
    h_floats(&h, L->bo, c->dim);
    if (c->arch >= LRT_ARCH_QWEN3) {
      h_floats(&h, L->attn_post_norm, c->dim);
      h_floats(&h, L->ffn_post_norm, c->dim);
      h_floats(&h, L->q_norm, c->qk_norm == LRT_QK_NORM_FULL ? qd : c->head_dim);
      h_floats(&h, L->k_norm, c->qk_norm == LRT_QK_NORM_FULL ? kvd : c->head_dim);
    }
    h_floats(&h, L->b_up, c->ffn);
    h_floats(&h, L->b_down, c->dim);
    h_mat(&h, &L->wq, tmp);
    h_mat(&h, &L->wk, tmp);
    h_mat(&h, &L->wv, tmp);
    h_mat(&h, &L->wo, tmp);
    h_mat(&h, &L->w_gate, tmp);
    h_mat(&h, &L->w_up, tmp);
    h_mat(&h, &L->w_down, tmp);
    h_perm(&h, L->qk_perm_q, qd);
    h_perm(&h, L->qk_perm_k, kvd);
  }
  free(tmp);
  h_final(&h, out);
  return LRT_OK;
}

/* ---- size ---------------------------------------------------------------------------------- */

/* Bytes of a blob for the given counts (`windowed` of the layers hold P - Q positions, the
 * others P; version 2 when v2); 0 on overflow. */
static uint64_t blob_size(int64_t P, int64_t R, int64_t C, int64_t V, int64_t layers, int64_t kvd,
                          int64_t windowed, int64_t Q, int v2) {
  uint64_t t = 0, x = 0, kv = 0, rows = 0, wrows = 0;
  if (!lrt_mul_u64((uint64_t)R, (uint64_t)V, &x)) return 0;
  if (!lrt_add_u64(x, (uint64_t)P, &x)) return 0;                   /* tokens + logits */
  if (!lrt_add_u64(x, 2 * (uint64_t)C, &x)) return 0;               /* candidates      */
  if (!lrt_mul_u64((uint64_t)P, (uint64_t)(layers - windowed), &rows)) return 0;
  if (!lrt_mul_u64((uint64_t)(P - Q), (uint64_t)windowed, &wrows)) return 0;
  if (!lrt_add_u64(rows, wrows, &rows)) return 0;                  /* positions kept  */
  if (!lrt_mul_u64(rows, (uint64_t)kvd, &kv)) return 0;
  if (!lrt_mul_u64(kv, 2, &kv)) return 0;                           /* K and V         */
  if (!lrt_add_u64(x, kv, &x)) return 0;
  if (!lrt_mul_u64(x, 4, &x)) return 0;                             /* 4-byte values   */
  if (!lrt_add_u64(x, HEADER_BYTES + (v2 ? 8u : 0u) + TRAILER_BYTES, &t)) return 0;
  if (t > (uint64_t)SIZE_MAX) return 0;
  return t;
}

static int64_t kv_dim(const lrt_model *m) { return m->cfg.n_kv_heads * m->cfg.head_dim; }

static int64_t windowed_layers(const lrt_config *c) {
  int64_t k = 0;
  for (int64_t l = 0; l < c->n_layers; l++) k += lrt_layer_window(c, l) > 0;
  return k;
}

/* Version 2 (and Q, the oldest position the windowed layers hold) for a session with rings
 * or one that loaded such a blob; version 1 (Q = 0) otherwise. */
static int save_v2(const lrt_session *s, int64_t *Q) {
  *Q = s->kv_lo < s->pos ? s->kv_lo : s->pos;
  return s->kv_ring > 0 || s->kv_lo > 0;
}

static int32_t state_size(const lrt_session *s, size_t *size) {
  if (!size) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "size must not be NULL");
  const lrt_config *c = &s->m->cfg;
  int64_t Q;
  int v2 = save_v2(s, &Q);
  uint64_t n = blob_size(s->pos, s->logits_rows, s->n_cand, c->vocab, c->n_layers, kv_dim(s->m),
                         windowed_layers(c), Q, v2);
  if (!n) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "the session state is too large to serialise on this platform");
  *size = (size_t)n;
  return LRT_OK;
}

/* ---- save ---------------------------------------------------------------------------------- */

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
  return p + 4;
}
static uint8_t *put_u64(uint8_t *p, uint64_t v) {
  put_u32(p, (uint32_t)v);
  put_u32(p + 4, (uint32_t)(v >> 32));
  return p + 8;
}
static uint8_t *put_f32s(uint8_t *p, const float *v, int64_t n) {
  for (int64_t i = 0; i < n; i++) p = put_u32(p, f32_bits(v[i]));
  return p;
}
static uint8_t *put_i32s(uint8_t *p, const int32_t *v, int64_t n) {
  for (int64_t i = 0; i < n; i++) p = put_u32(p, (uint32_t)v[i]);
  return p;
}

static void checksum(const uint8_t *p, size_t n, uint64_t out[2]) {
  hash128 h;
  h_init(&h, 2);
  h_bytes(&h, p, n);
  h_final(&h, out);
}

static int32_t state_save(const lrt_session *s, void *buf, size_t cap, size_t *written) {
  size_t need;
  int32_t st = state_size(s, &need);
  if (st) return st;
  if (!buf || cap < need)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the buffer holds %llu bytes but the state needs %llu "
                   "(ask lrt_session_state_size first)", (unsigned long long)cap, (unsigned long long)need);
  const lrt_model *m = s->m;
  const lrt_config *c = &m->cfg;
  uint64_t fp[2];
  if ((st = model_fingerprint(m, fp))) return st;
  int64_t kvd = kv_dim(m), P = s->pos, R = s->logits_rows, C = s->n_cand, Q;
  int v2 = save_v2(s, &Q);
  uint8_t *p = (uint8_t *)buf;
  memcpy(p, MAGIC, 8);
  p = put_u32(p + 8, v2 ? 2u : 1u);
  p = put_u32(p, LRT_NUMERICS_VERSION);
  p = put_u64(p, (uint64_t)need);
  p = put_u64(p, fp[0]);
  p = put_u64(p, fp[1]);
  p = put_u64(p, (uint64_t)c->vocab);
  p = put_u64(p, (uint64_t)c->n_layers);
  p = put_u64(p, (uint64_t)kvd);
  p = put_u64(p, (uint64_t)P);
  p = put_u64(p, (uint64_t)R);
  p = put_u64(p, (uint64_t)C);
  p = put_u64(p, f64_bits(s->temperature));
  p = put_u64(p, f64_bits(s->top_p));
  p = put_u64(p, f64_bits(s->min_p));
  p = put_u64(p, f64_bits(s->repeat_penalty));
  p = put_u64(p, (uint64_t)s->top_k);
  p = put_u64(p, (uint64_t)s->repeat_last_n);
  p = put_u64(p, s->seed);
  p = put_u64(p, (uint64_t)s->max_tokens);
  if (v2) p = put_u64(p, (uint64_t)Q);
  p = put_i32s(p, s->tokens, P);
  p = put_f32s(p, s->logits, R * c->vocab);
  p = put_i32s(p, s->cand_ids, C);
  p = put_f32s(p, s->cand_probs, C);
  for (int64_t l = 0; l < c->n_layers; l++) {
    int64_t lo = lrt_layer_window(c, l) ? Q : 0;
    for (int64_t q = lo; q < P; q++) p = put_f32s(p, s->k_cache[l] + lrt_kv_row(s, l, q) * kvd, kvd);
    for (int64_t q = lo; q < P; q++) p = put_f32s(p, s->v_cache[l] + lrt_kv_row(s, l, q) * kvd, kvd);
  }
  uint64_t sum[2];
  checksum((const uint8_t *)buf, need - TRAILER_BYTES, sum);
  p = put_u64(p, sum[0]);
  p = put_u64(p, sum[1]);
  if ((size_t)(p - (uint8_t *)buf) != need) return lrt_err(LRT_ERR_INTERNAL, "state size mismatch");
  if (written) *written = need;
  return LRT_OK;
}

int32_t lrt_session_state_size(const lrt_session *s, size_t *size) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  int32_t st = lrt_session_enter(s, "lrt_session_state_size");
  if (st) return st;
  st = state_size(s, size);
  lrt_session_leave(s);
  return st;
}

int32_t lrt_session_state_save(const lrt_session *s, void *buf, size_t cap, size_t *written) {
  if (written) *written = 0;
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  int32_t st = lrt_session_enter(s, "lrt_session_state_save");
  if (st) return st;
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  st = state_save(s, buf, cap, written);
  lrt_fpenv_leave(&env);
  lrt_session_leave(s);
  return st;
}

/* ---- load ---------------------------------------------------------------------------------- */

static uint32_t get_u32(const uint8_t *p) { return lrt_rd_u32le(p); }
static uint64_t get_u64(const uint8_t *p) { return lrt_rd_u64le(p); }
static double get_f64(const uint8_t *p) {
  uint64_t u = get_u64(p);
  double d;
  memcpy(&d, &u, 8);
  return d;
}
static void get_f32s(const uint8_t *p, float *v, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = get_u32(p + 4 * i);
    memcpy(&v[i], &u, 4);
  }
}

static int32_t state_load(lrt_session *s, const uint8_t *b, size_t len) {
  const lrt_model *m = s->m;
  const lrt_config *c = &m->cfg;
  if (len < HEADER_BYTES + TRAILER_BYTES)
    return lrt_err(LRT_ERR_FORMAT, "session state: %llu bytes is too short to be a loomrt state blob",
                   (unsigned long long)len);
  if (memcmp(b, MAGIC, 8) != 0)
    return lrt_err(LRT_ERR_FORMAT, "session state: bad magic (not a loomrt session state blob)");
  uint32_t fmt = get_u32(b + 8), numerics = get_u32(b + 12);
  if (fmt < 1 || fmt > LRT_STATE_FORMAT)
    return lrt_err(LRT_ERR_UNSUPPORTED, "session state: blob format version %u, this loomrt reads versions 1 to %u",
                   fmt, LRT_STATE_FORMAT);
  int v2 = fmt == 2;
  size_t header = HEADER_BYTES + (v2 ? 8u : 0u);
  if (len < header + TRAILER_BYTES)
    return lrt_err(LRT_ERR_FORMAT, "session state: %llu bytes is too short for a version %u blob",
                   (unsigned long long)len, fmt);
  if (get_u64(b + 16) != (uint64_t)len)
    return lrt_err(LRT_ERR_FORMAT, "session state: the blob says it is %llu bytes long but %llu were given "
                   "(truncated or padded)", (unsigned long long)get_u64(b + 16), (unsigned long long)len);
  uint64_t sum[2];
  checksum(b, len - TRAILER_BYTES, sum);
  if (sum[0] != get_u64(b + len - 16) || sum[1] != get_u64(b + len - 8))
    return lrt_err(LRT_ERR_FORMAT, "session state: checksum mismatch (the blob is corrupted)");
  if (numerics != LRT_NUMERICS_VERSION)
    return lrt_err(LRT_ERR_UNSUPPORTED, "session state: saved with numerics version %u, this loomrt has "
                   "numerics version %d; the KV cache is not valid across numerics versions", numerics,
                   LRT_NUMERICS_VERSION);
  int64_t V = (int64_t)get_u64(b + 40), layers = (int64_t)get_u64(b + 48), kvd = (int64_t)get_u64(b + 56);
  if (V != c->vocab || layers != c->n_layers || kvd != kv_dim(m))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session state: saved from a different model (vocab %lld, "
                   "%lld layers, KV width %lld; this model has %lld, %lld, %lld)", (long long)V, (long long)layers,
                   (long long)kvd, (long long)c->vocab, (long long)c->n_layers, (long long)kv_dim(m));
  uint64_t fp[2];
  int32_t st = model_fingerprint(m, fp);
  if (st) return st;
  if (fp[0] != get_u64(b + 24) || fp[1] != get_u64(b + 32))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session state: saved from a different model (same shape, "
                   "different weights or configuration); load it on a session of the model that saved it");
  int64_t P = (int64_t)get_u64(b + 64), R = (int64_t)get_u64(b + 72), C = (int64_t)get_u64(b + 80);
  int64_t Q = v2 ? (int64_t)get_u64(b + 152) : 0;
  if (P < 0 || R < 0 || C < 0 || C > V || R > P || Q < 0 || Q > P)
    return lrt_err(LRT_ERR_FORMAT, "session state: inconsistent counts (position %lld, logits rows %lld, "
                   "candidates %lld, oldest windowed position %lld)", (long long)P, (long long)R, (long long)C,
                   (long long)Q);
  if (Q > 0 && Q > P - c->sliding_window + 1)
    return lrt_err(LRT_ERR_FORMAT, "session state: the sliding-window layers' rows start at position %lld, after "
                   "the start of the window of position %lld (the blob was altered)", (long long)Q, (long long)P);
  uint64_t need = blob_size(P, R, C, V, layers, kvd, windowed_layers(c), Q, v2);
  if (!need)
    return lrt_err(LRT_ERR_FORMAT, "session state: the counts are too large (position %lld, logits rows %lld)",
                   (long long)P, (long long)R);
  if (need != (uint64_t)len)
    return lrt_err(LRT_ERR_FORMAT, "session state: the counts need %llu bytes but the blob has %llu",
                   (unsigned long long)need, (unsigned long long)len);
  if (P > s->ctx)
    return lrt_err(LRT_ERR_CONTEXT_FULL, "session state: %lld tokens do not fit this session's context of "
                   "%lld; create the session with a larger context", (long long)P, (long long)s->ctx);
  /* sampler settings, checked by the public setters on a scratch copy */
  lrt_session tmp; /* only its sampler fields are used (not a copy of s: other threads may
                      be reading s->busy at this moment) */
  memset(&tmp, 0, sizeof tmp);
  if ((st = lrt_session_set_float(&tmp, LRT_PARAM_TEMPERATURE, get_f64(b + 88))) ||
      (st = lrt_session_set_float(&tmp, LRT_PARAM_TOP_P, get_f64(b + 96))) ||
      (st = lrt_session_set_float(&tmp, LRT_PARAM_MIN_P, get_f64(b + 104))) ||
      (st = lrt_session_set_float(&tmp, LRT_PARAM_REPEAT_PENALTY, get_f64(b + 112))) ||
      (st = lrt_session_set_int(&tmp, LRT_PARAM_TOP_K, (int64_t)get_u64(b + 120))) ||
      (st = lrt_session_set_int(&tmp, LRT_PARAM_REPEAT_LAST_N, (int64_t)get_u64(b + 128))) ||
      (st = lrt_session_set_int(&tmp, LRT_PARAM_MAX_TOKENS, (int64_t)get_u64(b + 144))))
    return lrt_err_prefix(LRT_ERR_FORMAT, "session state: bad sampler setting");
  uint64_t seed = get_u64(b + 136);
  const uint8_t *tok = b + header;
  const uint8_t *lg = tok + 4 * (size_t)P;
  const uint8_t *cid = lg + 4 * (size_t)(R * V);
  const uint8_t *cpr = cid + 4 * (size_t)C;
  const uint8_t *kv = cpr + 4 * (size_t)C;
  for (int64_t i = 0; i < P; i++) {
    int32_t t = (int32_t)get_u32(tok + 4 * i);
    if (t < 0 || t >= V)
      return lrt_err(LRT_ERR_FORMAT, "session state: token %lld of the history is %d, outside [0, %lld)",
                     (long long)i, t, (long long)V);
  }
  for (int64_t i = 0; i < C; i++) {
    int32_t t = (int32_t)get_u32(cid + 4 * i);
    if (t < 0 || t >= V)
      return lrt_err(LRT_ERR_FORMAT, "session state: candidate id %d is outside [0, %lld)", t, (long long)V);
  }
  for (int64_t i = 0; i < R * V; i++) /* an eval never leaves non-finite logits (LRT_ERR_NUMERIC) */
    if ((get_u32(lg + 4 * i) & 0x7f800000u) == 0x7f800000u)
      return lrt_err(LRT_ERR_FORMAT, "session state: logit %lld of row %lld is NaN or infinite (no eval saves "
                     "such logits: the blob was altered)", (long long)(i % V), (long long)(i / V));
  /* everything is valid: make room, then commit (nothing visible changes before this point
   * except capacity) */
  if ((st = lrt_session_reserve(s, P))) return st;
  if (R * V > s->logits_cap) {
    float *nl = (float *)realloc(s->logits, (size_t)(R * V) * sizeof(float));
    if (!nl) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for the saved logits");
    s->logits = nl;
    s->logits_cap = R * V;
  }
  if (C > 0 && (st = lrt_sampler_reserve(s))) return st;
  s->history_id++; /* a pull generation (lrt_session_step) does not survive a load */
  for (int64_t i = 0; i < P; i++) s->tokens[i] = (int32_t)get_u32(tok + 4 * i);
  get_f32s(lg, s->logits, R * V);
  for (int64_t i = 0; i < C; i++) s->cand_ids[i] = (int32_t)get_u32(cid + 4 * i);
  get_f32s(cpr, s->cand_probs, C);
  /* windowed layers take the newest positions their ring holds (all of the blob's when the
   * session has no ring): [Qn, P) */
  int64_t Qn = Q;
  if (s->kv_ring && P - Qn > s->kv_ring) Qn = P - s->kv_ring;
  for (int64_t l = 0; l < layers; l++) {
    int64_t lo = lrt_layer_window(c, l) ? Q : 0, keep = lrt_layer_window(c, l) ? Qn : 0;
    size_t rowbytes = 4 * (size_t)((P - lo) * kvd);
    for (int64_t q = keep; q < P; q++) {
      get_f32s(kv + 4 * (size_t)((q - lo) * kvd), s->k_cache[l] + lrt_kv_row(s, l, q) * kvd, kvd);
      get_f32s(kv + rowbytes + 4 * (size_t)((q - lo) * kvd), s->v_cache[l] + lrt_kv_row(s, l, q) * kvd, kvd);
    }
    kv += 2 * rowbytes;
  }
  s->pos = P;
  s->kv_lo = windowed_layers(c) ? Qn : 0;
  s->logits_rows = R;
  s->n_cand = C;
  s->temperature = tmp.temperature;
  s->top_p = tmp.top_p;
  s->min_p = tmp.min_p;
  s->repeat_penalty = tmp.repeat_penalty;
  s->top_k = tmp.top_k;
  s->repeat_last_n = tmp.repeat_last_n;
  s->max_tokens = tmp.max_tokens;
  s->seed = seed;
  return LRT_OK;
}

int32_t lrt_session_state_load(lrt_session *s, const void *buf, size_t len) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!buf) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "buf must not be NULL");
  int32_t st = lrt_session_enter(s, "lrt_session_state_load");
  if (st) return st;
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  st = state_load(s, (const uint8_t *)buf, len);
  lrt_fpenv_leave(&env);
  lrt_session_leave(s);
  return st;
}
