/* model.c -- open a HuggingFace folder or a GGUF file and bind the weights.
 *
 * Matrices (F32, F16, BF16 and the GGUF block formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) are used in place
 * in the memory mapping (or in the copy read into memory with LRT_OPEN_NO_MMAP); block formats are dequantized one row at a time as they are used
 * (forward.c). Small vectors (norm weights, biases) are widened to owned float arrays. GPT-2's
 * Conv1D matrices are stored transposed (in, out); they are transposed once into owned
 * buffers in their stored format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/lrt_math.h"
#include "model.h"

#define INDEX_MAX_BYTES (64u << 20)

/* Big-endian hosts (s390x, ...) byte-swap F32/F16/BF16 matrices once at load (get_mat). */
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LRT_BIG_ENDIAN 1
#else
#define LRT_BIG_ENDIAN 0
#endif

/* ---- owned buffers --------------------------------------------------------------------- */

static void *own(lrt_model *m, size_t bytes) {
  if (m->n_owned == m->cap_owned) {
    size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
    void **p = (void **)realloc(m->owned, cap * sizeof(void *));
    if (!p) return NULL;
    m->owned = p;
    size_t *n = (size_t *)realloc(m->owned_bytes, cap * sizeof(size_t));
    if (!n) return NULL;
    m->owned_bytes = n;
    m->cap_owned = cap;
  }
  void *b = malloc(bytes ? bytes : 1);
  if (!b) return NULL;
  m->owned_bytes[m->n_owned] = bytes;
  m->owned[m->n_owned++] = b;
  m->resident_bytes += bytes;
  return b;
}

/* Free the owned buffer starting at p, if there is one (a no-op for other pointers). */
static void disown(lrt_model *m, const void *p) {
  for (size_t i = 0; i < m->n_owned; i++)
    if (m->owned[i] == p) {
      free(m->owned[i]);
      m->resident_bytes -= m->owned_bytes[i];
      m->owned[i] = m->owned[m->n_owned - 1];
      m->owned_bytes[i] = m->owned_bytes[m->n_owned - 1];
      m->n_owned--;
      return;
    }
}

/* ---- tensor lookup over all sources ----------------------------------------------------- */

static const lrt_tensor_ref *find_tensor(const lrt_model *m, const char *name) {
  if (m->is_gguf) return lrt_gguf_find_tensor(&m->gguf, name);
  for (size_t i = 0; i < m->n_st_files; i++) {
    const lrt_tensor_ref *t = lrt_st_find(&m->st_files[i], name);
    if (t) return t;
  }
  return NULL;
}

/* The model binds this tensor (the unused-tensor check at the end of the load reads it). The
 * tables are the model's own (allocated by the parsers): only the lookup is const. */
static void mark_used(const lrt_tensor_ref *t) {
  if (t) ((lrt_tensor_ref *)t)->used = 1;
}

static int32_t shape_error(const lrt_tensor_ref *t, int64_t r, int64_t c) {
  char got[128] = "";
  size_t off = 0;
  for (int i = 0; i < t->n_dims && off < sizeof got - 24; i++)
    off += (size_t)snprintf(got + off, sizeof got - off, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (c > 0)
    return lrt_err(LRT_ERR_FORMAT, "tensor %s has shape [%s] but the config implies [%lld, %lld]",
                   t->name, got, (long long)r, (long long)c);
  return lrt_err(LRT_ERR_FORMAT, "tensor %s has shape [%s] but the config implies [%lld]", t->name,
                 got, (long long)r);
}

/* Float value of element i of a tensor in a plain float format. */
static float elem(const lrt_tensor_ref *t, uint64_t i) {
  switch (t->dtype) {
    case LRT_DT_F32: { uint32_t u = lrt_rd_u32le(t->data + 4 * i); float f; memcpy(&f, &u, 4); return f; }
    case LRT_DT_F16: return lrt_f16_to_f32(lrt_rd_u16le(t->data + 2 * i));
    default: return lrt_bf16_to_f32(lrt_rd_u16le(t->data + 2 * i));
  }
}

/* Bind a matrix (rows x cols). `transposed`: the file holds it as (cols, rows) (GPT-2). */
static int32_t get_mat(lrt_model *m, const char *name, int64_t rows, int64_t cols,
                       int transposed, lrt_mat *out) {
  const lrt_tensor_ref *t = find_tensor(m, name);
  if (!t) return lrt_err(LRT_ERR_FORMAT, "tensor %s is missing from the model files", name);
  int64_t r = transposed ? cols : rows, c = transposed ? rows : cols;
  if (t->n_dims != 2 || t->shape[0] != r || t->shape[1] != c) return shape_error(t, r, c);
  mark_used(t);
  m->weight_bytes += t->nbytes;
  m->n_params += t->n_elems;
  out->rows = rows;
  out->cols = cols;
  if (t->dtype == LRT_DT_F32 || t->dtype == LRT_DT_F16 || t->dtype == LRT_DT_BF16 ||
      t->dtype == LRT_DT_Q8_0 || t->dtype == LRT_DT_Q4_0 || t->dtype == LRT_DT_Q4_1 ||
      t->dtype == LRT_DT_Q4_K || t->dtype == LRT_DT_Q5_K || t->dtype == LRT_DT_Q6_K ||
      t->dtype == LRT_DT_Q5_0 || t->dtype == LRT_DT_Q5_1) {
    if (transposed && t->dtype >= LRT_DT_Q8_0)
      return lrt_err(LRT_ERR_UNSUPPORTED, "tensor %s: transposed block-quantized matrices are not supported", name);
    out->dtype = t->dtype;
    out->data = t->data;
#if LRT_BIG_ENDIAN
    /* Files are little-endian. Block formats are read bytewise (their F16 scales through
     * lrt_rd_u16le), but F32/F16/BF16 matrices are used as native words by the kernels:
     * on a big-endian host they are copied once, each element byte-swapped. */
    if (t->dtype == LRT_DT_F32 || t->dtype == LRT_DT_F16 || t->dtype == LRT_DT_BF16) {
      size_t es = t->dtype == LRT_DT_F32 ? 4 : 2;
      uint8_t *dst = (uint8_t *)own(m, (size_t)t->n_elems * es);
      if (!dst) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory byte-swapping %s", name);
      for (uint64_t k = 0; k < t->n_elems; k++)
        for (size_t b = 0; b < es; b++) dst[k * es + b] = t->data[k * es + es - 1 - b];
      out->data = dst;
    }
#endif
  } else {
    return lrt_err(LRT_ERR_UNSUPPORTED, "tensor %s has type %s; loomrt computes with F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K",
                   name, t->dtype_name);
  }
  if (transposed) { /* (c, r) -> (r, c), same element size */
    size_t es = out->dtype == LRT_DT_F32 ? 4 : 2;
    uint8_t *dst = (uint8_t *)own(m, (size_t)(rows * cols) * es);
    if (!dst) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory transposing %s", name);
    const uint8_t *src = (const uint8_t *)out->data;
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) memcpy(dst + (size_t)(i * cols + j) * es, src + (size_t)(j * rows + i) * es, es);
    out->data = dst;
  }
  return LRT_OK;
}

/* ---- quantizing at load (LRT_OPEN_QUANTIZE_Q8_0) ------------------------------------------ */

/* The file mapping that holds p, or NULL (caller buffers, owned copies). */
static const lrt_mapped_file *mapping_of(const lrt_model *m, const void *p) {
  const uint8_t *b = (const uint8_t *)p;
  if (m->is_gguf) return (b >= m->gguf.map.data && b < m->gguf.map.data + m->gguf.map.size) ? &m->gguf.map : NULL;
  for (size_t i = 0; i < m->n_st_files; i++) {
    const lrt_mapped_file *f = &m->st_files[i].map;
    if (f->data && b >= f->data && b < f->data + f->size) return f;
  }
  return NULL;
}

/* Replace an F32/F16/BF16 matrix by its Q8_0 blocks in an owned buffer; the mapped pages it
 * was read from are given back to the OS. Others are left as they are. */
static int32_t quantize_mat(lrt_model *m, lrt_mat *w, const char *what, float *row) {
  if ((w->dtype != LRT_DT_F32 && w->dtype != LRT_DT_F16 && w->dtype != LRT_DT_BF16) || w->cols % 32 || !w->rows) return LRT_OK;
  size_t es = w->dtype == LRT_DT_F32 ? 4 : 2, row_bytes = (size_t)(w->cols / 32) * 34;
  uint8_t *dst = (uint8_t *)own(m, (size_t)w->rows * row_bytes);
  if (!dst) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory quantizing %s to Q8_0", what);
  const uint8_t *src = (const uint8_t *)w->data;
  for (int64_t r = 0; r < w->rows; r++) {
    const uint8_t *s = src + (size_t)(r * w->cols) * es;
    for (int64_t j = 0; j < w->cols; j++) { /* native words: get_mat byte-swapped them on big-endian hosts */
      if (w->dtype == LRT_DT_F32) memcpy(&row[j], s + 4 * j, 4);
      else {
        uint16_t h;
        memcpy(&h, s + 2 * j, 2);
        row[j] = w->dtype == LRT_DT_F16 ? lrt_f16_to_f32(h) : lrt_bf16_to_f32(h);
      }
    }
    if (lrt_quantize_q8_0(row, dst + (size_t)r * row_bytes, w->cols) != 0)
      return lrt_err(LRT_ERR_FORMAT, "cannot quantize %s to Q8_0: row %lld holds NaN or infinity, or values whose "
                     "block scale is outside the F16 range; open it without quantizing", what, (long long)r);
  }
  const lrt_mapped_file *f = mapping_of(m, src);
  if (f) lrt_map_release(f, src, (uint64_t)w->rows * (uint64_t)w->cols * es);
  w->dtype = LRT_DT_Q8_0;
  w->data = dst;
  return LRT_OK;
}

static int32_t quantize_all(lrt_model *m) {
  lrt_config *c = &m->cfg;
  int64_t max_cols = m->tok_embd.cols > m->lm_head.cols ? m->tok_embd.cols : m->lm_head.cols;
  for (int64_t l = 0; l < c->n_layers; l++) {
    const lrt_layer *L = &m->layers[l];
    const lrt_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    for (int i = 0; i < 7; i++) if (ms[i]->cols > max_cols) max_cols = ms[i]->cols;
  }
  float *row = (float *)malloc((size_t)(max_cols > 0 ? max_cols : 1) * sizeof(float)); /* one widened row */
  if (!row) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  int32_t st = LRT_OK;
  /* the matrices' float sources: owned copies among them (GPT-2's transposed matrices,
   * big-endian byte-swapped ones) are freed once no matrix reads them any more */
  size_t n_src = 2 + 7 * (size_t)c->n_layers;
  const void **src = (const void **)calloc(n_src, sizeof(void *));
  if (!src) {
    free(row);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  }
  src[0] = m->tok_embd.data;
  src[1] = m->lm_head.data;
  for (int64_t l = 0; l < c->n_layers; l++) {
    lrt_layer *L = &m->layers[l];
    const lrt_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    for (int i = 0; i < 7; i++) src[2 + 7 * l + i] = ms[i]->data;
  }
  const void *embd = m->tok_embd.data;
  if ((st = quantize_mat(m, &m->tok_embd, "the token embedding", row))) goto done;
  if (m->lm_head.data == embd) m->lm_head = m->tok_embd; /* tied: one copy */
  else if ((st = quantize_mat(m, &m->lm_head, "the LM head", row))) goto done;
  for (int64_t l = 0; l < c->n_layers; l++) {
    lrt_layer *L = &m->layers[l];
    lrt_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    static const char *names[7] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};
    for (int i = 0; i < 7; i++) {
      char what[64];
      snprintf(what, sizeof what, "layer %lld %s", (long long)l, names[i]);
      if (ms[i]->data && (st = quantize_mat(m, ms[i], what, row))) goto done;
    }
  }
  m->quantized_at_load = 1;
  for (size_t i = 0; i < n_src; i++) {
    if (!src[i]) continue;
    size_t k = 0, bytes = 0;
    for (; k < m->n_owned && m->owned[k] != src[i]; k++) {
    }
    if (k == m->n_owned) continue; /* not the start of an owned buffer (a mapping, or inside one) */
    bytes = m->owned_bytes[k];
    const uint8_t *lo = (const uint8_t *)src[i], *hi = lo + bytes;
    int used = (const uint8_t *)m->pos_embd.data >= lo && (const uint8_t *)m->pos_embd.data < hi;
    for (int64_t l = 0; l < c->n_layers && !used; l++) {
      const lrt_layer *L = &m->layers[l];
      const lrt_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
      for (int j = 0; j < 7; j++)
        if ((const uint8_t *)ms[j]->data >= lo && (const uint8_t *)ms[j]->data < hi) used = 1;
    }
    if ((const uint8_t *)m->tok_embd.data >= lo && (const uint8_t *)m->tok_embd.data < hi) used = 1;
    if ((const uint8_t *)m->lm_head.data >= lo && (const uint8_t *)m->lm_head.data < hi) used = 1;
    if (!used) {
      disown(m, src[i]);
      for (size_t j = i + 1; j < n_src; j++) /* the same buffer listed again (tied, GPT-2 qkv) */
        if (src[j] == src[i]) src[j] = NULL;
    }
  }
done:
  free(src);
  free(row);
  return st;
}

/* Bind a vector of length n as an owned float array. optional: NULL when absent. */
static int32_t get_vec(lrt_model *m, const char *name, int64_t n, int optional, float **out) {
  *out = NULL;
  const lrt_tensor_ref *t = find_tensor(m, name);
  if (!t) {
    if (optional) return LRT_OK;
    return lrt_err(LRT_ERR_FORMAT, "tensor %s is missing from the model files", name);
  }
  if (t->n_dims != 1 || t->shape[0] != n) return shape_error(t, n, 0);
  if (t->dtype != LRT_DT_F32 && t->dtype != LRT_DT_F16 && t->dtype != LRT_DT_BF16)
    return lrt_err(LRT_ERR_UNSUPPORTED, "tensor %s has type %s; vectors must be F32, F16 or BF16", name, t->dtype_name);
  float *f = (float *)own(m, (size_t)n * 4);
  if (!f) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory loading %s", name);
  mark_used(t);
  for (int64_t i = 0; i < n; i++) f[i] = elem(t, (uint64_t)i);
  m->weight_bytes += t->nbytes;
  m->n_params += t->n_elems;
  *out = f;
  return LRT_OK;
}

/* llama.cpp's converter reorders the rows of Q and K inside each head so that RoPE pairs
 * are adjacent ((h, 2, hd/2) -> (h, hd/2, 2)). Rather than copying the weights, loomrt
 * computes the projection in the file's row order and then moves each output to its HF
 * position: each output is the same dot product, so the bits match the safetensors copy. */
static int32_t make_perm(lrt_model *m, int64_t heads, int64_t hd, int32_t **out) {
  int32_t *p = (int32_t *)own(m, (size_t)(heads * hd) * 4);
  if (!p) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t h = 0; h < heads; h++)
    for (int64_t j = 0; j < hd / 2; j++)
      for (int64_t s = 0; s < 2; s++) /* file row h*hd + 2j + s  ->  HF row h*hd + s*hd/2 + j */
        p[h * hd + 2 * j + s] = (int32_t)(h * hd + s * (hd / 2) + j);
  *out = p;
  return LRT_OK;
}

/* ---- RoPE frequencies ---------------------------------------------------------------- */

/* Inverse frequency i (0 <= i < rotary_dim / 2) in double: theta^(-2i/d) (d = the rotary
 * dimension) with loomrt's own exp/log, then the configured scaling. `kind`: 0 the global table
 * (Llama 3 / linear / longrope short factors), 1 longrope's long factors, 2 the local table
 * (Gemma 3 sliding layers: own base, no scaling). The model rounds it to float (GGUF
 * rope_freqs divide it first). */
static double rope_freq(const lrt_config *c, int kind, int64_t i) {
  double log_theta = lrt_log(kind == 2 ? c->rope_local_theta : c->rope_theta);
  /* inv_freq = theta^(-2i/d) */
  double f = lrt_exp(-(double)(2 * i) / (double)c->rotary_dim * log_theta);
  if (kind != 2 && c->rope_llama3) { /* Llama 3.1 frequency-dependent scaling */
    const double two_pi = 6.283185307179586;
    double wavelen = two_pi / f;
    double low_wl = c->rope_orig_ctx / c->rope_low_freq;
    double high_wl = c->rope_orig_ctx / c->rope_high_freq;
    if (wavelen > low_wl) {
      f = f / c->rope_factor;
    } else if (wavelen >= high_wl) {
      double smooth = (c->rope_orig_ctx / wavelen - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
      f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
    }
  }
  if (kind != 2 && c->rope_linear > 0.0) f = f / c->rope_linear;
  if (c->rope_longrope && kind != 2) f = f / (kind == 1 ? c->rope_long[i] : c->rope_short[i]);
  return f;
}

/* The global table's frequency i (the trainer's RoPE uses it too). */
double lrt_rope_freq(const lrt_config *c, int64_t i) { return rope_freq(c, 0, i); }

static void rope_freqs(const lrt_model *m, int kind, const lrt_tensor_ref *rf, float *out) {
  const lrt_config *c = &m->cfg;
  int64_t half = c->rotary_dim / 2;
  for (int64_t i = 0; i < half; i++) {
    double f = rope_freq(c, kind, i);
    if (rf) f = f / (double)elem(rf, (uint64_t)i);
    out[i] = (float)f;
  }
}

/* GGUF longrope factors (tensors rope_factors_short / _long) into the config. */
static int32_t gguf_rope_factors(lrt_model *m) {
  lrt_config *c = &m->cfg;
  int64_t half = c->rotary_dim / 2;
  if (half > LRT_MAX_ROPE_FACTORS) return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF: rotary dimension too large for longrope");
  const char *names[2] = {"rope_factors_short.weight", "rope_factors_long.weight"};
  for (int k = 0; k < 2; k++) {
    const lrt_tensor_ref *t = find_tensor(m, names[k]);
    if (!t || t->n_dims != 1 || t->shape[0] != half || t->dtype != LRT_DT_F32)
      return lrt_err(LRT_ERR_FORMAT, "GGUF: tensor %s must be F32 of length %lld (rotary dimension / 2)", names[k], (long long)half);
    mark_used(t);
    for (int64_t i = 0; i < half; i++) {
      double f = (double)elem(t, (uint64_t)i);
      if (!(f > 0.0) || f > 1e9) return lrt_err(LRT_ERR_FORMAT, "GGUF: %s[%lld] must be a positive number", names[k], (long long)i);
      (k ? c->rope_long : c->rope_short)[i] = f;
    }
  }
  return LRT_OK;
}

static int32_t rope_table(lrt_model *m) {
  const lrt_config *c = &m->cfg;
  int64_t half = c->rotary_dim / 2;
  m->rope_inv_freq = (float *)own(m, (size_t)half * 4);
  if (!m->rope_inv_freq) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  const lrt_tensor_ref *rf = m->is_gguf ? find_tensor(m, "rope_freqs.weight") : NULL;
  if (rf && (rf->n_dims != 1 || rf->shape[0] != half || rf->dtype != LRT_DT_F32))
    return lrt_err(LRT_ERR_FORMAT, "tensor rope_freqs.weight must be F32 of length %lld", (long long)half);
  mark_used(rf);
  rope_freqs(m, 0, rf, m->rope_inv_freq);
  if (c->rope_longrope) {
    if (!(m->rope_inv_freq_long = (float *)own(m, (size_t)half * 4))) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    rope_freqs(m, 1, rf, m->rope_inv_freq_long);
  }
  if (c->rope_local_theta > 0.0) {
    if (!(m->rope_inv_freq_local = (float *)own(m, (size_t)half * 4))) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    rope_freqs(m, 2, NULL, m->rope_inv_freq_local);
  }
  return LRT_OK;
}

/* ---- opening ---------------------------------------------------------------------------- */

static int32_t open_safetensors(lrt_model *m, const char *folder) {
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", folder);
  if (lrt_is_file(path)) {
    m->st_files = (lrt_st_file *)calloc(1, sizeof(lrt_st_file));
    if (!m->st_files) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    int32_t st = lrt_st_open(path, (m->open_flags & LRT_OPEN_NO_MMAP) != 0, &m->st_files[0]);
    if (st) return st;
    m->n_st_files = 1;
    return LRT_OK;
  }
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
  if (!lrt_is_file(path))
    return lrt_err(LRT_ERR_NOT_FOUND, "%s has neither model.safetensors nor model.safetensors.index.json", folder);
  char *text;
  size_t len;
  int32_t st = lrt_read_file(path, INDEX_MAX_BYTES, &text, &len);
  if (st) return st;
  lj_doc *doc;
  st = lj_parse(text, len, "model.safetensors.index.json", &doc);
  free(text);
  if (st) return st;
  const lj_value *wm = lj_get(lj_root(doc), "weight_map");
  if (!wm || wm->type != LJ_OBJECT || wm->count == 0) {
    lj_free(doc);
    return lrt_err(LRT_ERR_FORMAT, "model.safetensors.index.json: \"weight_map\" must be a non-empty object");
  }
  m->st_files = (lrt_st_file *)calloc(wm->count, sizeof(lrt_st_file));
  const char **names = (const char **)calloc(wm->count, sizeof(char *));
  if (!m->st_files || !names) {
    free(names);
    lj_free(doc);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < wm->count && st == LRT_OK; i++) {
    const lj_value *v = &wm->members[i].value;
    if (v->type != LJ_STRING || v->str_len == 0 || strchr(v->str, '/') || strchr(v->str, '\\') ||
        strcmp(v->str, "..") == 0) {
      st = lrt_err(LRT_ERR_FORMAT, "model.safetensors.index.json: weight_map[\"%s\"] must be a file name in the folder",
                   wm->members[i].key);
      break;
    }
    int seen = 0;
    for (size_t j = 0; j < m->n_st_files; j++) seen |= strcmp(names[j], v->str) == 0;
    if (seen) continue;
    snprintf(path, sizeof path, "%s/%s", folder, v->str);
    st = lrt_st_open(path, (m->open_flags & LRT_OPEN_NO_MMAP) != 0, &m->st_files[m->n_st_files]);
    if (st == LRT_OK) names[m->n_st_files++] = v->str;
  }
  /* every tensor named in the index must be in the files */
  for (size_t i = 0; i < wm->count && st == LRT_OK; i++)
    if (!find_tensor(m, wm->members[i].key))
      st = lrt_err(LRT_ERR_FORMAT, "tensor %s is listed in model.safetensors.index.json but missing from %s",
                   wm->members[i].key, wm->members[i].value.str);
  free(names);
  lj_free(doc);
  return st;
}

/* Gemma's RMSNorm multiplies by (1 + w): HF files store w, so the owned copy becomes
 * 1.0f + w (one float rounding, as transformers' `1.0 + self.weight.float()`). */
static int32_t get_norm(lrt_model *m, const char *name, int64_t n, int optional, float **out) {
  int32_t st = get_vec(m, name, n, optional, out);
  if (st || !*out || !m->cfg.norm_plus_one) return st;
  for (int64_t i = 0; i < n; i++) (*out)[i] = 1.0f + (*out)[i];
  return LRT_OK;
}

/* Phi-3's fused matrices: wq / wk / wv (or gate / up) are row ranges of one matrix. */
static void split_rows(const lrt_mat *all, int64_t r0, int64_t rows, lrt_mat *out) {
  *out = *all;
  out->rows = rows;
  out->data = (const uint8_t *)all->data + (size_t)r0 * lrt_mat_row_bytes(all);
}

static void tensor_name(char *buf, size_t cap, const char *fmt, int64_t layer) {
  snprintf(buf, cap, fmt, (long long)layer);
}

/* A model with tied embeddings may still store its LM head (some exporters write both); HF
 * ties it to the embedding and ignores the stored copy, and so does loomrt. A copy of the
 * embedding's shape counts as used; any other shape is left to the unused-tensor check. */
static void tied_head_copy(lrt_model *m, const char *name) {
  const lrt_tensor_ref *t = find_tensor(m, name);
  if (t && t->n_dims == 2 && t->shape[0] == m->cfg.vocab && t->shape[1] == m->cfg.dim) mark_used(t);
}

static int32_t bind_hf(lrt_model *m) {
  lrt_config *c = &m->cfg;
  int32_t st;
  char n[256];
  int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  if (c->arch == LRT_ARCH_GPT2) {
    const char *pre = find_tensor(m, "transformer.wte.weight") ? "transformer." : "";
    snprintf(n, sizeof n, "%swte.weight", pre);
    if ((st = get_mat(m, n, c->vocab, c->dim, 0, &m->tok_embd))) return st;
    snprintf(n, sizeof n, "%swpe.weight", pre);
    if ((st = get_mat(m, n, c->ctx, c->dim, 0, &m->pos_embd))) return st;
    snprintf(n, sizeof n, "%sln_f.weight", pre);
    if ((st = get_vec(m, n, c->dim, 0, &m->out_norm))) return st;
    snprintf(n, sizeof n, "%sln_f.bias", pre);
    if ((st = get_vec(m, n, c->dim, 0, &m->out_norm_b))) return st;
    m->lm_head = m->tok_embd;
    tied_head_copy(m, "lm_head.weight");
    for (int64_t l = 0; l < c->n_layers; l++) {
      lrt_layer *L = &m->layers[l];
      char f[160];
      lrt_mat qkv;
      float *bqkv;
#define P(s) (snprintf(f, sizeof f, "%sh.%%lld.%s", pre, s), tensor_name(n, sizeof n, f, l), n)
      if ((st = get_vec(m, P("ln_1.weight"), c->dim, 0, &L->attn_norm))) return st;
      if ((st = get_vec(m, P("ln_1.bias"), c->dim, 0, &L->attn_norm_b))) return st;
      if ((st = get_mat(m, P("attn.c_attn.weight"), 3 * c->dim, c->dim, 1, &qkv))) return st;
      if ((st = get_vec(m, P("attn.c_attn.bias"), 3 * c->dim, 0, &bqkv))) return st;
      if ((st = get_mat(m, P("attn.c_proj.weight"), c->dim, c->dim, 1, &L->wo))) return st;
      if ((st = get_vec(m, P("attn.c_proj.bias"), c->dim, 0, &L->bo))) return st;
      if ((st = get_vec(m, P("ln_2.weight"), c->dim, 0, &L->ffn_norm))) return st;
      if ((st = get_vec(m, P("ln_2.bias"), c->dim, 0, &L->ffn_norm_b))) return st;
      if ((st = get_mat(m, P("mlp.c_fc.weight"), c->ffn, c->dim, 1, &L->w_up))) return st;
      if ((st = get_vec(m, P("mlp.c_fc.bias"), c->ffn, 0, &L->b_up))) return st;
      if ((st = get_mat(m, P("mlp.c_proj.weight"), c->dim, c->ffn, 1, &L->w_down))) return st;
      if ((st = get_vec(m, P("mlp.c_proj.bias"), c->dim, 0, &L->b_down))) return st;
#undef P
      size_t es = qkv.dtype == LRT_DT_F32 ? 4 : 2;
      L->wq = L->wk = L->wv = qkv;
      L->wq.rows = L->wk.rows = L->wv.rows = c->dim;
      L->wk.data = (const uint8_t *)qkv.data + (size_t)(c->dim * c->dim) * es;
      L->wv.data = (const uint8_t *)qkv.data + (size_t)(2 * c->dim * c->dim) * es;
      L->bq = bqkv;
      L->bk = bqkv + c->dim;
      L->bv = bqkv + 2 * c->dim;
    }
    return LRT_OK;
  }
  if ((st = get_mat(m, "model.embed_tokens.weight", c->vocab, c->dim, 0, &m->tok_embd))) return st;
  if ((st = get_norm(m, "model.norm.weight", c->dim, 0, &m->out_norm))) return st;
  if (c->tied) {
    m->lm_head = m->tok_embd;
    tied_head_copy(m, "lm_head.weight");
  } else if ((st = get_mat(m, "lm_head.weight", c->vocab, c->dim, 0, &m->lm_head))) {
    return st;
  }
  int gemma = c->arch == LRT_ARCH_GEMMA2 || c->arch == LRT_ARCH_GEMMA3;
  int64_t qn = c->qk_norm == LRT_QK_NORM_FULL ? qd : c->head_dim, kn = c->qk_norm == LRT_QK_NORM_FULL ? kvd : c->head_dim;
  for (int64_t l = 0; l < c->n_layers; l++) {
    lrt_layer *L = &m->layers[l];
#define P(s) (tensor_name(n, sizeof n, "model.layers.%lld." s, l), n)
    if (c->pre_norms && (st = get_norm(m, P("input_layernorm.weight"), c->dim, 0, &L->attn_norm))) return st;
    if (gemma) { /* sandwich norms: post_attention_layernorm is the norm after attention */
      if ((st = get_norm(m, P("post_attention_layernorm.weight"), c->dim, 0, &L->attn_post_norm))) return st;
      if ((st = get_norm(m, P("pre_feedforward_layernorm.weight"), c->dim, 0, &L->ffn_norm))) return st;
      if ((st = get_norm(m, P("post_feedforward_layernorm.weight"), c->dim, 0, &L->ffn_post_norm))) return st;
    } else if (c->arch == LRT_ARCH_OLMO2) { /* norms after attention and MLP only */
      if ((st = get_norm(m, P("post_attention_layernorm.weight"), c->dim, 0, &L->attn_post_norm))) return st;
      if ((st = get_norm(m, P("post_feedforward_layernorm.weight"), c->dim, 0, &L->ffn_post_norm))) return st;
    } else if ((st = get_vec(m, P("post_attention_layernorm.weight"), c->dim, 0, &L->ffn_norm))) {
      return st;
    }
    if (c->fused_qkv) {
      lrt_mat qkv, gu;
      if ((st = get_mat(m, P("self_attn.qkv_proj.weight"), qd + 2 * kvd, c->dim, 0, &qkv))) return st;
      split_rows(&qkv, 0, qd, &L->wq);
      split_rows(&qkv, qd, kvd, &L->wk);
      split_rows(&qkv, qd + kvd, kvd, &L->wv);
      if ((st = get_mat(m, P("mlp.gate_up_proj.weight"), 2 * c->ffn, c->dim, 0, &gu))) return st;
      split_rows(&gu, 0, c->ffn, &L->w_gate); /* transformers: gate, up = chunk(2) */
      split_rows(&gu, c->ffn, c->ffn, &L->w_up);
    } else {
      if ((st = get_mat(m, P("self_attn.q_proj.weight"), qd, c->dim, 0, &L->wq))) return st;
      if ((st = get_mat(m, P("self_attn.k_proj.weight"), kvd, c->dim, 0, &L->wk))) return st;
      if ((st = get_mat(m, P("self_attn.v_proj.weight"), kvd, c->dim, 0, &L->wv))) return st;
    }
    if ((st = get_mat(m, P("self_attn.o_proj.weight"), c->dim, qd, 0, &L->wo))) return st;
    if (c->qk_norm) {
      if ((st = get_norm(m, P("self_attn.q_norm.weight"), qn, 0, &L->q_norm))) return st;
      if ((st = get_norm(m, P("self_attn.k_norm.weight"), kn, 0, &L->k_norm))) return st;
    }
    if (c->qkv_bias) {
      if ((st = get_vec(m, P("self_attn.q_proj.bias"), qd, 0, &L->bq))) return st;
      if ((st = get_vec(m, P("self_attn.k_proj.bias"), kvd, 0, &L->bk))) return st;
      if ((st = get_vec(m, P("self_attn.v_proj.bias"), kvd, 0, &L->bv))) return st;
    }
    if (c->o_bias && (st = get_vec(m, P("self_attn.o_proj.bias"), c->dim, 0, &L->bo))) return st;
    if (!c->fused_qkv) {
      if ((st = get_mat(m, P("mlp.gate_proj.weight"), c->ffn, c->dim, 0, &L->w_gate))) return st;
      if ((st = get_mat(m, P("mlp.up_proj.weight"), c->ffn, c->dim, 0, &L->w_up))) return st;
    }
    if ((st = get_mat(m, P("mlp.down_proj.weight"), c->dim, c->ffn, 0, &L->w_down))) return st;
    if (c->mlp_bias) {
      if ((st = get_vec(m, P("mlp.up_proj.bias"), c->ffn, 0, &L->b_up))) return st;
      if ((st = get_vec(m, P("mlp.down_proj.bias"), c->dim, 0, &L->b_down))) return st;
    }
#undef P
  }
  return LRT_OK;
}

static int32_t bind_gguf(lrt_model *m) {
  lrt_config *c = &m->cfg;
  int32_t st;
  char n[256];
  const lrt_tensor_ref *te = find_tensor(m, "token_embd.weight");
  if (!te) return lrt_err(LRT_ERR_FORMAT, "GGUF: tensor token_embd.weight is missing");
  if (te->n_dims != 2 || te->shape[1] != c->dim)
    return lrt_err(LRT_ERR_FORMAT, "GGUF: token_embd.weight must be (vocab, %lld)", (long long)c->dim);
  c->vocab = te->shape[0];
  int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  if ((st = get_mat(m, "token_embd.weight", c->vocab, c->dim, 0, &m->tok_embd))) return st;
  if ((st = get_vec(m, "output_norm.weight", c->dim, 0, &m->out_norm))) return st;
  c->tied = find_tensor(m, "output.weight") == NULL;
  if (c->tied) m->lm_head = m->tok_embd;
  else if ((st = get_mat(m, "output.weight", c->vocab, c->dim, 0, &m->lm_head))) return st;
  int permuted = c->arch == LRT_ARCH_LLAMA || c->arch == LRT_ARCH_SMOLLM3; /* llama.cpp's LlamaModel converter */
  int64_t qn = c->qk_norm == LRT_QK_NORM_FULL ? qd : c->head_dim, kn = c->qk_norm == LRT_QK_NORM_FULL ? kvd : c->head_dim;
  if (c->rope_longrope && (st = gguf_rope_factors(m))) return st;
  for (int64_t l = 0; l < c->n_layers; l++) {
    lrt_layer *L = &m->layers[l];
#define P(s) (tensor_name(n, sizeof n, "blk.%lld." s, l), n)
    if (c->pre_norms) {
      if ((st = get_vec(m, P("attn_norm.weight"), c->dim, 0, &L->attn_norm))) return st;
      if ((st = get_vec(m, P("ffn_norm.weight"), c->dim, 0, &L->ffn_norm))) return st;
    }
    if (c->post_norms) {
      if ((st = get_vec(m, P("post_attention_norm.weight"), c->dim, 0, &L->attn_post_norm))) return st;
      if ((st = get_vec(m, P("post_ffw_norm.weight"), c->dim, 0, &L->ffn_post_norm))) return st;
    }
    if (c->fused_qkv && find_tensor(m, P("attn_qkv.weight"))) {
      lrt_mat qkv;
      if ((st = get_mat(m, P("attn_qkv.weight"), qd + 2 * kvd, c->dim, 0, &qkv))) return st;
      split_rows(&qkv, 0, qd, &L->wq);
      split_rows(&qkv, qd, kvd, &L->wk);
      split_rows(&qkv, qd + kvd, kvd, &L->wv);
    } else {
      if ((st = get_mat(m, P("attn_q.weight"), qd, c->dim, 0, &L->wq))) return st;
      if ((st = get_mat(m, P("attn_k.weight"), kvd, c->dim, 0, &L->wk))) return st;
      if ((st = get_mat(m, P("attn_v.weight"), kvd, c->dim, 0, &L->wv))) return st;
    }
    if ((st = get_mat(m, P("attn_output.weight"), c->dim, qd, 0, &L->wo))) return st;
    if (c->qk_norm) {
      if ((st = get_vec(m, P("attn_q_norm.weight"), qn, 0, &L->q_norm))) return st;
      if ((st = get_vec(m, P("attn_k_norm.weight"), kn, 0, &L->k_norm))) return st;
    }
    if (c->qkv_bias) {
      if ((st = get_vec(m, P("attn_q.bias"), qd, 0, &L->bq))) return st;
      if ((st = get_vec(m, P("attn_k.bias"), kvd, 0, &L->bk))) return st;
      if ((st = get_vec(m, P("attn_v.bias"), kvd, 0, &L->bv))) return st;
    }
    if (c->fused_qkv && !find_tensor(m, P("ffn_gate.weight"))) { /* Phi-3: ffn_up holds gate then up */
      lrt_mat gu;
      if ((st = get_mat(m, P("ffn_up.weight"), 2 * c->ffn, c->dim, 0, &gu))) return st;
      split_rows(&gu, 0, c->ffn, &L->w_gate);
      split_rows(&gu, c->ffn, c->ffn, &L->w_up);
    } else {
      if ((st = get_mat(m, P("ffn_gate.weight"), c->ffn, c->dim, 0, &L->w_gate))) return st;
      if ((st = get_mat(m, P("ffn_up.weight"), c->ffn, c->dim, 0, &L->w_up))) return st;
    }
    if ((st = get_mat(m, P("ffn_down.weight"), c->dim, c->ffn, 0, &L->w_down))) return st;
#undef P
    if (permuted) {
      if ((st = make_perm(m, c->n_heads, c->head_dim, &L->qk_perm_q))) return st;
      if ((st = make_perm(m, c->n_kv_heads, c->head_dim, &L->qk_perm_k))) return st;
    }
  }
  return LRT_OK;
}

static const char *ext_of(const char *path, size_t len) {
  return len >= 5 ? path + len - 5 : "";
}

static int32_t finish_load(lrt_model *m, const char *what);
static void describe_features(lrt_model *m);
static void gguf_name(lrt_model *m);

int32_t lrt_model_load(const char *path, int32_t flags, lrt_model **out) {
  *out = NULL;
  lrt_model *m = (lrt_model *)calloc(1, sizeof *m);
  if (!m) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  m->open_flags = flags;
  int32_t st;
  size_t plen = strlen(path);
  int vocab_only = (flags & LRT_OPEN_TOKENIZER_ONLY) != 0;
  if (vocab_only) m->cfg.bos = -1; /* no config, no weights: api/ attaches the tokenizer */
  if (vocab_only && lrt_is_dir(path)) {
    /* the folder's tokenizer files are read by api/ */
  } else if (lrt_is_dir(path)) {
    if ((st = lrt_config_from_hf(path, flags, &m->cfg, m->name, sizeof m->name))) goto fail;
    if ((st = open_safetensors(m, path))) goto fail;
  } else if (lrt_is_file(path)) {
    if (strcmp(ext_of(path, plen), ".gguf") != 0 && strcmp(ext_of(path, plen), ".GGUF") != 0) {
      st = lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s is a file but not a .gguf file; pass a GGUF file or a HuggingFace model folder", path);
      goto fail;
    }
    m->is_gguf = 1;
    if ((st = lrt_gguf_open(path, (flags & LRT_OPEN_NO_MMAP) != 0, &m->gguf))) goto fail;
    if (!vocab_only && (st = lrt_config_from_gguf(&m->gguf, &m->cfg))) goto fail;
    gguf_name(m);
  } else {
    st = lrt_err(LRT_ERR_NOT_FOUND, "model path not found: %s (pass a HuggingFace model folder or a .gguf file)", path);
    goto fail;
  }
  if (flags & LRT_OPEN_NO_MMAP) { /* the files read into memory are loomrt's allocation now */
    if (m->is_gguf) m->resident_bytes += m->gguf.map.size;
    for (size_t i = 0; i < m->n_st_files; i++) m->resident_bytes += m->st_files[i].map.size;
  }
  if (!vocab_only && (st = finish_load(m, path))) goto fail;
  *out = m;
  return LRT_OK;
fail:
  lrt_model_free(m);
  return st;
}

/* ---- tensors nothing uses ---------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Tensors some writers store that carry nothing the forward pass needs: HF's rotary inv_freq
 * buffers (transformers < 4.31 saved them; loomrt computes the frequencies from the config)
 * and GPT-2's causal-mask buffers h.N.attn.bias / h.N.attn.masked_bias. */
static int harmless_extra(const lrt_model *m, const char *name) {
  if (m->is_gguf) return 0;
  if (ends_with(name, ".rotary_emb.inv_freq")) return 1;
  return m->cfg.arch == LRT_ARCH_GPT2 && (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"));
}

/* The layer number of a per-layer tensor name ("blk.7.", "model.layers.7.", "h.7.",
 * "transformer.h.7."), or -1. */
static int64_t layer_of(const char *name) {
  static const char *const prefixes[] = {"blk.", "model.layers.", "h.", "transformer.h."};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    size_t k = strlen(prefixes[i]);
    if (strncmp(name, prefixes[i], k) != 0) continue;
    const char *p = name + k;
    int64_t v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) v = v * 10 + (*p - '0');
    if (digits > 0 && *p == '.') return v;
  }
  return -1;
}

/* Every tensor of the files must be bound by the model (or be a known harmless extra): a
 * GGUF block_count or config num_hidden_layers smaller than the layers present, or tensors
 * of another variant (biases, extra norms), would otherwise be skipped silently and the
 * model would compute something else. LRT_OPEN_ALLOW_UNUSED_TENSORS opts out. */
static int32_t check_unused(const lrt_model *m, const char *what) {
  if (m->open_flags & LRT_OPEN_ALLOW_UNUSED_TENSORS) return LRT_OK;
  const lrt_tensor_ref *first = NULL;
  size_t n_unused = 0;
  size_t n_src = m->is_gguf ? 1 : m->n_st_files;
  for (size_t f = 0; f < n_src; f++) {
    const lrt_tensor_ref *ts = m->is_gguf ? m->gguf.tensors : m->st_files[f].tensors;
    size_t n = m->is_gguf ? m->gguf.n_tensors : m->st_files[f].n_tensors;
    for (size_t i = 0; i < n; i++) {
      if (ts[i].used || harmless_extra(m, ts[i].name)) continue;
      if (!first) first = &ts[i];
      n_unused++;
    }
  }
  if (!first) return LRT_OK;
  const lrt_config *c = &m->cfg;
  char more[64] = "";
  if (n_unused > 1) snprintf(more, sizeof more, " (and %zu more unused tensor%s)", n_unused - 1, n_unused > 2 ? "s" : "");
  const char *fix = "open with allow_unused_tensors=True (LRT_OPEN_ALLOW_UNUSED_TENSORS) to ignore them";
  int64_t layer = layer_of(first->name);
  if (layer >= c->n_layers) {
    char key[64];
    if (m->is_gguf) snprintf(key, sizeof key, "GGUF %s.block_count", c->arch_name);
    else snprintf(key, sizeof key, "config.json %s", c->arch == LRT_ARCH_GPT2 ? "n_layer" : "num_hidden_layers");
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\" belongs to layer %lld, but the model has %lld layer%s (%s)%s: "
                   "the file holds layers its configuration does not count, which would be skipped silently. "
                   "Correct %s, or %s", what, first->name, (long long)layer, (long long)c->n_layers,
                   c->n_layers == 1 ? "" : "s", key, more, key, fix);
  }
  return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\" is in the file but the %s model (as configured) does not use it%s: "
                 "the file may be of another architecture or variant, which would compute something else. "
                 "Check the configuration, or %s", what, first->name, c->arch_name, more, fix);
}

/* Bind the weights of an opened source (config read, files parsed); `what` names the source
 * in messages. */
static int32_t finish_load(lrt_model *m, const char *what) {
  int32_t st;
  m->layers = (lrt_layer *)calloc((size_t)m->cfg.n_layers, sizeof(lrt_layer));
  if (!m->layers) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  if ((st = m->is_gguf ? bind_gguf(m) : bind_hf(m))) return st;
  if (!m->cfg.learned_pos && (st = rope_table(m))) return st;
  if ((st = check_unused(m, what))) return st;
  if ((m->open_flags & LRT_OPEN_QUANTIZE_Q8_0) && (st = quantize_all(m))) return st;
  describe_features(m);
  { /* eos ids outside the vocabulary can never be sampled: drop them */
    int k = 0;
    for (int i = 0; i < m->cfg.n_eos; i++)
      if (m->cfg.eos[i] < m->cfg.vocab) m->cfg.eos[k++] = m->cfg.eos[i];
    m->cfg.n_eos = k;
  }
  if (m->cfg.bos >= m->cfg.vocab) m->cfg.bos = -1;
  snprintf(m->dtype_name, sizeof m->dtype_name, "%s", "f32");
  {
    const lrt_tensor_ref *t = find_tensor(m, m->is_gguf ? "blk.0.ffn_up.weight"
                                             : m->cfg.arch == LRT_ARCH_GPT2 ? (find_tensor(m, "h.0.mlp.c_fc.weight") ? "h.0.mlp.c_fc.weight" : "transformer.h.0.mlp.c_fc.weight")
                                                                           : "model.layers.0.mlp.up_proj.weight");
    if (!t && !m->is_gguf) t = find_tensor(m, "model.layers.0.mlp.gate_up_proj.weight"); /* Phi-3 */
    if (t) snprintf(m->dtype_name, sizeof m->dtype_name, "%s", m->is_gguf ? t->dtype_name : lrt_dtype_name(t->dtype));
    for (char *p = m->dtype_name; *p; p++) if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    if (m->quantized_at_load && m->layers[0].w_up.dtype == LRT_DT_Q8_0) snprintf(m->dtype_name, sizeof m->dtype_name, "%s", "q8_0");
  }
  return LRT_OK;
}

/* m->features: what this family computes beyond a Llama-style model, in words (loomrt info). */
static void describe_features(lrt_model *m) {
  const lrt_config *c = &m->cfg;
  char *b = m->features;
  size_t cap = sizeof m->features, n = 0;
  b[0] = 0;
#define ADD(...) do { if (n < cap) { int w_ = snprintf(b + n, cap - n, n ? "; " : "%s", ""); if (w_ > 0) n += (size_t)w_; } \
                      if (n < cap) { int w_ = snprintf(b + n, cap - n, __VA_ARGS__); if (w_ > 0) n += (size_t)w_; } } while (0)
  if (c->head_dim * c->n_heads != c->dim && !c->learned_pos) ADD("head_dim %lld (not hidden / heads)", (long long)c->head_dim);
  if (c->qk_norm == LRT_QK_NORM_HEAD) ADD("q/k RMSNorm per head");
  if (c->arch == LRT_ARCH_QWEN3 && !c->qkv_bias) ADD("no q/k/v bias (Qwen2 has them)");
  if (c->qkv_bias && c->arch != LRT_ARCH_GPT2) ADD("q/k/v biases");
  if (c->qk_norm == LRT_QK_NORM_FULL) ADD("q/k RMSNorm over the whole projection");
  if (c->arch == LRT_ARCH_GEMMA2 || c->arch == LRT_ARCH_GEMMA3) ADD("RMSNorm weight 1 + w");
  if (c->embed_scale != 0.0f) ADD("embeddings x %g", (double)c->embed_scale);
  if (c->geglu) ADD("GeGLU (tanh GELU)");
  if (c->post_norms) ADD(c->pre_norms ? "norms before and after attention and MLP" : "norms after attention and MLP (none before)");
  if (c->fused_qkv) ADD("fused qkv and gate_up");
  if (c->attn_scalar > 0.0 && c->attn_scalar != (double)c->head_dim) ADD("query_pre_attn_scalar %g", c->attn_scalar);
  if (c->attn_softcap != 0.0f) ADD("attention soft-cap %g", (double)c->attn_softcap);
  if (c->final_softcap != 0.0f) ADD("final-logit soft-cap %g", (double)c->final_softcap);
  if (c->sliding_window > 0) {
    int64_t k = 0;
    for (int64_t l = 0; l < c->n_layers; l++) k += (c->layer_kind[l] & LRT_LAYER_SLIDING) != 0;
    if (!c->any_sliding) k = c->n_layers;
    ADD("sliding window %lld on %lld of %lld layers", (long long)c->sliding_window, (long long)k, (long long)c->n_layers);
  }
  if (c->rope_local_theta > 0.0) ADD("local RoPE base %g on sliding layers, global base %g", c->rope_local_theta, c->rope_theta);
  if (c->rope_linear > 0.0) ADD("RoPE linear scaling / %g%s", c->rope_linear, c->rope_local_theta > 0.0 ? " (global layers)" : "");
  if (c->rope_llama3) ADD("Llama 3 RoPE scaling (factor %g)", c->rope_factor);
  {
    int64_t k = 0;
    for (int64_t l = 0; l < c->n_layers; l++) k += (c->layer_kind[l] & LRT_LAYER_NO_ROPE) != 0;
    if (k) ADD("no RoPE on %lld of %lld layers", (long long)k, (long long)c->n_layers);
  }
  if (!c->learned_pos && c->rotary_dim != c->head_dim) ADD("partial rotary: %lld of %lld dims", (long long)c->rotary_dim, (long long)c->head_dim);
  if (c->rope_longrope)
    ADD("longrope: short factors below position %g, long from it, attention factor %g", c->rope_orig_ctx, c->rope_attn_factor);
#undef ADD
}

static void gguf_name(lrt_model *m) {
  const lrt_gguf_kv *nk = lrt_gguf_find(&m->gguf, "general.name");
  if (nk && nk->type == LRT_META_STRING)
    snprintf(m->name, sizeof m->name, "%.*s", (int)(nk->str_lens[0] < 255 ? nk->str_lens[0] : 255), nk->strs[0]);
}

static int is_gguf_name(const char *name) {
  size_t n = strlen(name);
  return strcmp(ext_of(name, n), ".gguf") == 0 || strcmp(ext_of(name, n), ".GGUF") == 0;
}

/* Safetensors from memory: "model.safetensors", or "model.safetensors.index.json" naming
 * shard files that are also given. */
static int32_t memory_safetensors(lrt_model *m, const lrt_vfile *files, size_t n) {
  const lrt_vfile *one = lrt_vfile_find(files, n, "model.safetensors");
  if (one) {
    m->st_files = (lrt_st_file *)calloc(1, sizeof(lrt_st_file));
    if (!m->st_files) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    int32_t st = lrt_st_parse(one->data, one->size, "model.safetensors", &m->st_files[0]);
    if (st) return st;
    m->n_st_files = 1;
    return LRT_OK;
  }
  const lrt_vfile *idx = lrt_vfile_find(files, n, "model.safetensors.index.json");
  if (!idx)
    return lrt_err(LRT_ERR_NOT_FOUND, "the files given hold neither \"model.safetensors\" nor \"model.safetensors.index.json\"");
  if (idx->size > INDEX_MAX_BYTES) return lrt_err(LRT_ERR_FORMAT, "model.safetensors.index.json is too large");
  lj_doc *doc;
  int32_t st = lj_parse((const char *)idx->data, idx->size, "model.safetensors.index.json", &doc);
  if (st) return st;
  const lj_value *wm = lj_get(lj_root(doc), "weight_map");
  if (!wm || wm->type != LJ_OBJECT || wm->count == 0) {
    lj_free(doc);
    return lrt_err(LRT_ERR_FORMAT, "model.safetensors.index.json: \"weight_map\" must be a non-empty object");
  }
  m->st_files = (lrt_st_file *)calloc(wm->count, sizeof(lrt_st_file));
  const char **names = (const char **)calloc(wm->count, sizeof(char *));
  if (!m->st_files || !names) {
    free(names);
    lj_free(doc);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < wm->count && st == LRT_OK; i++) {
    const lj_value *v = &wm->members[i].value;
    if (v->type != LJ_STRING || v->str_len == 0) {
      st = lrt_err(LRT_ERR_FORMAT, "model.safetensors.index.json: weight_map[\"%s\"] must be a file name", wm->members[i].key);
      break;
    }
    int seen = 0;
    for (size_t j = 0; j < m->n_st_files; j++) seen |= strcmp(names[j], v->str) == 0;
    if (seen) continue;
    const lrt_vfile *f = lrt_vfile_find(files, n, v->str);
    if (!f) {
      st = lrt_err(LRT_ERR_NOT_FOUND, "model.safetensors.index.json names the shard \"%s\", which is not among the files given", v->str);
      break;
    }
    st = lrt_st_parse(f->data, f->size, f->name, &m->st_files[m->n_st_files]);
    if (st == LRT_OK) names[m->n_st_files++] = v->str;
  }
  for (size_t i = 0; i < wm->count && st == LRT_OK; i++)
    if (!find_tensor(m, wm->members[i].key))
      st = lrt_err(LRT_ERR_FORMAT, "tensor %s is listed in model.safetensors.index.json but missing from %s",
                   wm->members[i].key, wm->members[i].value.str);
  free(names);
  lj_free(doc);
  return st;
}

int32_t lrt_model_load_memory(const lrt_vfile *files, size_t n, int32_t flags, lrt_model **out) {
  *out = NULL;
  lrt_model *m = (lrt_model *)calloc(1, sizeof *m);
  if (!m) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  m->open_flags = flags;
  int32_t st;
  int vocab_only = (flags & LRT_OPEN_TOKENIZER_ONLY) != 0;
  if (vocab_only) m->cfg.bos = -1;
  const lrt_vfile *gg = NULL;
  for (size_t i = 0; i < n; i++)
    if (is_gguf_name(files[i].name)) {
      if (gg) {
        st = lrt_err(LRT_ERR_INVALID_ARGUMENT, "two GGUF files given (\"%s\" and \"%s\"); give one", gg->name, files[i].name);
        goto fail;
      }
      gg = &files[i];
    }
  if (gg) {
    m->is_gguf = 1;
    if ((st = lrt_gguf_parse(gg->data, gg->size, gg->name, &m->gguf))) goto fail;
    if (!vocab_only && (st = lrt_config_from_gguf(&m->gguf, &m->cfg))) goto fail;
    gguf_name(m);
  } else if (vocab_only) {
    /* tokenizer.json and its side files are read by api/ */
  } else {
    const lrt_vfile *cj = lrt_vfile_find(files, n, "config.json");
    const lrt_vfile *gj = lrt_vfile_find(files, n, "generation_config.json");
    if (!cj) {
      st = lrt_err(LRT_ERR_NOT_FOUND, "no \"config.json\" and no \"*.gguf\" among the files given: pass a GGUF "
                   "file, or config.json + model.safetensors (+ tokenizer.json)");
      goto fail;
    }
    if ((st = lrt_config_from_hf_json((const char *)cj->data, cj->size, gj ? (const char *)gj->data : NULL,
                                      gj ? gj->size : 0, flags, &m->cfg, m->name, sizeof m->name)))
      goto fail;
    if ((st = memory_safetensors(m, files, n))) goto fail;
  }
  if (!vocab_only && (st = finish_load(m, gg ? gg->name : "the files given"))) goto fail;
  *out = m;
  return LRT_OK;
fail:
  lrt_model_free(m);
  return st;
}

void lrt_model_free(lrt_model *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
  free(m->owned);
  free(m->owned_bytes);
  for (size_t i = 0; i < m->n_st_files; i++) lrt_st_close(&m->st_files[i]);
  free(m->st_files);
  if (m->is_gguf) lrt_gguf_close(&m->gguf);
  free(m->layers);
  free(m);
}
