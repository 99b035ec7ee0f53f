/* combine.c -- one weave step's numerics: each model's softmax, the mode's combination, the
 * combined distribution (docs/weaving.md gives the formulas; this file is their spec in C).
 *
 * Everything is float32 with loomrt's own exp (the kernel table's exp_f32, the bits of
 * lrt_expf on every path) and log (lrt_log in double, rounded once to float), every sum over
 * the vocabulary in the dot8 order (sum_f32) and every sum over models sequential in model
 * order. No value depends on the thread count: one thread computes the whole step. */
#include <stdlib.h>
#include <string.h>

#include "../base/lrt_math.h"
#include "../kernels/kernels.h"
#include "weave.h"

static float neg_inf(void) {
  uint32_t b = 0xff800000u;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

/* p = softmax(z) over n entries: m = max z; e = exp(z - m); Z = sum8(e); p = e / Z.
 * *zmax = m, *lz = log Z (float of the double log), *pmax = 1 / Z (the probability of the
 * first maximum: its e is exp(0) = 1 exactly). A row without any finite maximum (all -inf)
 * becomes uniform. */
static void softmax_row(const float *z, int64_t n, float *p, float *zmax, float *lz, float *pmax) {
  const lrt_kernels *K = lrt_kernels_get();
  float mx = neg_inf();
  for (int64_t t = 0; t < n; t++)
    if (z[t] > mx) mx = z[t];
  if (!(mx > neg_inf())) {
    float u = 1.0f / (float)n;
    for (int64_t t = 0; t < n; t++) p[t] = u;
    *zmax = mx;
    *lz = (float)lrt_log((double)n);
    *pmax = u;
    return;
  }
  for (int64_t t = 0; t < n; t++) p[t] = z[t] - mx;
  K->exp_f32(p, p, n);
  float Z = K->sum_f32(p, n);
  for (int64_t t = 0; t < n; t++) p[t] = p[t] / Z;
  *zmax = mx;
  *lz = (float)lrt_log((double)Z);
  *pmax = 1.0f / Z;
}

/* Step 1 of a combination for model i: its last logits row (NaN -> -FLT_MAX, as the sampler
 * does; the contrast amateur divided by its temperature) and its softmax. A pool task: it
 * writes model i's slices only. */
static void model_softmax(void *ctx, int64_t i, int thread) {
  (void)thread;
  lrt_weave *w = (lrt_weave *)ctx;
  lrt_session *s = w->s[i];
  int64_t vm = w->vmax;
  const float *row = s->logits + (s->logits_rows - 1) * w->vocab[i];
  float *z = w->z + i * vm;
  int amateur = w->mode == LRT_WEAVE_CONTRAST && i == 1 && w->amateur_temp != 1.0;
  float tau = (float)w->amateur_temp;
  for (int64_t t = 0; t < w->vocab[i]; t++) {
    float v = row[t] != row[t] ? -3.402823466e38f : row[t];
    z[t] = amateur ? v / tau : v;
  }
  softmax_row(z, w->vocab[i], w->p + i * vm, &w->zmax[i], &w->lz[i], &w->pmax[i]);
}

/* The weights in force at step `step`: static or scheduled, then the rule; mix normalises. */
static void step_weights(lrt_weave *w, int64_t step) {
  int64_t n = w->n;
  double b[LRT_WEAVE_MAX_MODELS];
  lrt_wv_base_weights(w, step, b);
  if (w->rule == LRT_WV_RULE_ROUTE) {
    memcpy(b, w->route_w + (w->in_code ? n : 0), (size_t)n * sizeof(double));
  } else if (w->rule == LRT_WV_RULE_CONFIDENCE) {
    double sb = 0.0, sbc = 0.0;
    for (int64_t i = 0; i < n; i++) {
      sb = sb + b[i];
      sbc = sbc + b[i] * (double)w->pmax[i];
    }
    if (sbc > 0.0)
      for (int64_t i = 0; i < n; i++) b[i] = (b[i] * (double)w->pmax[i]) * (sb / sbc);
  }
  if (w->mode == LRT_WEAVE_MIX) {
    double sb = 0.0;
    for (int64_t i = 0; i < n; i++) sb = sb + b[i];
    for (int64_t i = 0; i < n; i++) b[i] = b[i] / sb;
  }
  for (int64_t i = 0; i < n; i++) {
    w->w_now[i] = b[i];
    w->wf[i] = (float)b[i];
  }
}

static double mode_alpha(const lrt_weave *w) {
  if (w->alpha >= 0.0) return w->alpha;
  return w->mode == LRT_WEAVE_CONTRAST ? 0.1 : 1.0;
}

int32_t lrt_wv_combine(lrt_weave *w, int64_t step) {
  int64_t n = w->n, V = w->V, S = w->S, vm = w->vmax;
  const float ninf = neg_inf();
  /* 1. each model's logits (NaN -> -FLT_MAX, as the sampler does) and softmax */
  for (int64_t i = 0; i < n; i++)
    if (w->s[i]->logits_rows < 1) return lrt_err(LRT_ERR_STATE, "weave: session %lld has no logits", (long long)i);
  lrt_wv_each_model(w, model_softmax, w);
  /* 2. the weights in force */
  step_weights(w, step);
  /* 3. the mode's combination over the shared ids; masked ids are -inf */
  float *c = w->comb, *q = w->cp;
  const float *wf = w->wf;
  switch (w->mode) {
    case LRT_WEAVE_MIX: {
      int64_t only = -1, nonzero = 0;
      for (int64_t i = 0; i < n; i++)
        if (w->w_now[i] != 0.0) { nonzero++; only = i; }
      for (int64_t t = 0; t < S; t++) {
        float acc = wf[0] * w->p[t];
        for (int64_t i = 1; i < n; i++) acc = acc + wf[i] * w->p[i * vm + t];
        q[t] = acc;
      }
      for (int64_t t = S; t < V; t++) q[t] = 0.0f;
      if (nonzero == 1) { /* one model at weight 1: its logits unchanged (same distribution) */
        memcpy(c, w->z + only * vm, (size_t)S * sizeof(float));
      } else {
        lrt_kernels_get()->log_f32(q, c, S); /* q > 0 ? (float)lrt_log(q) : -inf */
      }
      for (int64_t t = S; t < V; t++) c[t] = ninf;
      break;
    }
    case LRT_WEAVE_PRODUCT:
      for (int64_t t = 0; t < S; t++) {
        float acc = wf[0] * w->z[t];
        for (int64_t i = 1; i < n; i++) acc = acc + wf[i] * w->z[i * vm + t];
        c[t] = acc;
      }
      break;
    case LRT_WEAVE_CONTRAST: {
      float thr = (float)mode_alpha(w) * w->pmax[0];
      const float *pe = w->p, *ze = w->z, *za = w->z + vm;
      for (int64_t t = 0; t < S; t++) {
        if (pe[t] >= thr) {
          float lpe = (ze[t] - w->zmax[0]) - w->lz[0];
          float lpa = (za[t] - w->zmax[1]) - w->lz[1];
          c[t] = wf[0] * lpe - wf[1] * lpa;
        } else {
          c[t] = ninf;
        }
      }
      break;
    }
    case LRT_WEAVE_PROXY: {
      float a = (float)mode_alpha(w);
      const float *z0 = w->z, *z1 = w->z + vm, *z2 = w->z + 2 * vm;
      for (int64_t t = 0; t < S; t++) {
        float d = wf[1] * z1[t] - wf[2] * z2[t];
        c[t] = wf[0] * z0[t] + a * d;
      }
      break;
    }
    default:
      return lrt_err(LRT_ERR_INTERNAL, "weave: unknown mode %d", (int)w->mode);
  }
  if (w->mode != LRT_WEAVE_MIX) {
    for (int64_t t = S; t < V; t++) c[t] = ninf;
    float m0, l0, p0;
    softmax_row(c, V, q, &m0, &l0, &p0);
  }
  w->has_comb = 1;
  return LRT_OK;
}
