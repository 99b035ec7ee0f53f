/* weave.h -- the weave layer (csrc/weave/): combining the next-token distributions of N
 * sessions stepped over one token stream (docs/weaving.md). Above model/, below api/:
 * includes base/, kernels/ and model/ only. The exported lrt_weave_* gate (argument checks,
 * prompts, tokenizer, text) is api/weave_api.c; this layer owns the numerics (per-model
 * softmax, the four modes, weights from schedules and rules) and the trace. */
#ifndef LOOMRT_WEAVE_H
#define LOOMRT_WEAVE_H

#include "../model/model.h"

#define LRT_WEAVE_MAX_MODELS 16
#define LRT_WEAVE_MAX_TOP_K 64

enum { LRT_WV_RULE_NONE = 0, LRT_WV_RULE_CONFIDENCE = 1, LRT_WV_RULE_ROUTE = 2 };

struct lrt_weave {
  int64_t n;                               /* models                                        */
  lrt_session *s[LRT_WEAVE_MAX_MODELS];    /* borrowed sessions                             */
  int64_t vocab[LRT_WEAVE_MAX_MODELS];     /* each model's logits columns                   */
  int64_t V;                               /* combined columns: min of vocab[]              */
  int64_t S;                               /* shared ids [0, S); [S, V) masked              */
  int64_t vmax;                            /* max of vocab[]                                */
  int32_t mode;                            /* lrt_weave_mode                                */
  double alpha;                            /* <0: the mode's default                        */
  double amateur_temp;
  int32_t top_k;                           /* trace top tokens                              */
  double weights[LRT_WEAVE_MAX_MODELS];    /* static                                        */
  int32_t sched_kind;
  double *sched;                           /* LIST rows x n, RAMP knots x (n + 1)           */
  int64_t sched_rows;
  int32_t rule;
  double route_w[2 * LRT_WEAVE_MAX_MODELS];/* route: outside, inside a code fence           */
  int in_code, backticks;                  /* route state over the byte stream              */
  /* per step */
  float *z;                                /* (n, vmax) logits, NaN -> -FLT_MAX             */
  float *p;                                /* (n, vmax) p_i = softmax(z_i) (contrast amateur:
                                              of z_1 / amateur_temp)                        */
  float zmax[LRT_WEAVE_MAX_MODELS], lz[LRT_WEAVE_MAX_MODELS], pmax[LRT_WEAVE_MAX_MODELS];
  float wf[LRT_WEAVE_MAX_MODELS];          /* weights as used (float)                       */
  double w_now[LRT_WEAVE_MAX_MODELS];      /* weights in force (mix: normalised)            */
  float *comb;                             /* (V) combined logits handed to the sampler     */
  float *cp;                               /* (V) combined distribution at temperature 1    */
  int has_comb;
  lrt_session carrier;                     /* sampler settings and buffers: a session struct
                                              used only by lrt_sample (logits = comb)        */
  /* trace: rows of fixed stride */
  int64_t n_rows, cap_rows;
  int32_t *row_tok, *row_dom;
  double *row_d;                           /* per row: combined, sampled, then n weights,
                                              n probs, n shares                             */
  int64_t *row_rank;                       /* per row: n ranks                              */
  int32_t *row_top_id;                     /* per row: (n + 1) x top_k ids (-1 = none)      */
  float *row_top_p;                        /* per row: (n + 1) x top_k probabilities        */
  int32_t row_top_k;                       /* top_k of the stored rows (fixed per prompt)   */
  /* generation (api/weave_api.c) */
  int active, finished;
  int32_t reason;
  int32_t pending;
  int64_t n_prompt, n_generated, pos_mark;
  uint64_t hist_mark[LRT_WEAVE_MAX_MODELS];
  struct lrt_gen *dec;                     /* stream decoder of model 0's text (api/)        */
  int32_t *ids;                            /* tokenization buffer                            */
  int64_t cap_ids;
  /* models stepped at once (LRT_WEAVE_PARALLEL): NULL = one after another on the caller's
     thread; else a pool whose task i runs model i (its eval on its own session and threads,
     then its softmax). Each model's values are computed by the same code either way. */
  lrt_pool *pool;
  int32_t parallel;
  const int32_t *task_ids;                 /* the eval of a parallel step                    */
  int64_t task_n;
  int32_t task_st[LRT_WEAVE_MAX_MODELS];
  char task_msg[LRT_WEAVE_MAX_MODELS][256];/* a worker's error message (thread-local there)  */
};

/* Allocate the buffers of a weave whose n, s[], vocab[], V, S are set; defaults. */
int32_t lrt_wv_init(lrt_weave *w);
/* Free what lrt_wv_init and the trace allocated (not the struct, not the sessions). */
void lrt_wv_release(lrt_weave *w);
/* Models a mode needs: 0 when n fits, else an error status with a message. */
int32_t lrt_wv_check_mode(int32_t mode, int64_t n);
/* A weight vector of n entries: finite, >= 0, not all zero (`what` names it in errors). */
int32_t lrt_wv_check_weights(const double *w, int64_t n, const char *what);
/* The static / scheduled weights of generated step `step`, before any rule. */
void lrt_wv_base_weights(const lrt_weave *w, int64_t step, double *out);
/* Feed the bytes of the stream (prompt, then each token) to the route rule's fence state. */
void lrt_wv_observe(lrt_weave *w, const char *bytes, size_t len);
/* Reset the fence state and the trace (a new prompt). */
void lrt_wv_restart(lrt_weave *w);
/* Step models at once with a pool of `threads` (<= 1: one after another). */
int32_t lrt_wv_set_parallel(lrt_weave *w, int32_t threads);
/* Run fn(ctx, i) for every model i, on the pool when there is one (task i always computes
 * model i's outputs, so nothing depends on which thread runs it). */
void lrt_wv_each_model(lrt_weave *w, lrt_task_fn fn, void *ctx);
/* Combine the sessions' last logits rows for generated step `step`: fills z, p, w_now,
 * comb, cp. Call under the floating-point guard. */
int32_t lrt_wv_combine(lrt_weave *w, int64_t step);
/* Append the trace row of the token the sampler chose from comb. */
int32_t lrt_wv_record(lrt_weave *w, int32_t token);

#endif
