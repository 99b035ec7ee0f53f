/* train.h -- the training layer (csrc/train/): a trainable copy of a model's weights in
 * float32, the forward pass that keeps its activations, the backward pass, AdamW with
 * global-norm clipping and the learning-rate schedules. Includes model/, kernels/, formats/
 * and base/ only; api/train_api.c is its exported gate.
 *
 * The determinism contract of inference holds for training (docs/training.md, "Numerics"):
 *   - every dot product is a kernel dot8 (kernels.h), so each kernel path gives the same bits;
 *   - threads split outputs (rows of a matrix product, (sequence, head) pairs of attention,
 *     tokens of the norms and the loss, chunks of the optimizer's elements), never a sum;
 *   - a weight gradient is a sum over the tokens of the global batch in one order: per
 *     sequence (a "chunk" of T tokens) the dot8 order over its tokens, then the sequence sums
 *     added one after the other in the order the sequences were given, starting from the
 *     accumulator of the previous micro-batch. So k micro-batches of b sequences accumulate
 *     exactly the bits of one batch of k*b sequences;
 *   - vector gradients (norm weights, biases) follow the same rule (per-sequence partial
 *     sums over its tokens in order, then sequences in order); the embedding lookup adds its
 *     rows to the accumulator token after token, in order (api/train_grad.c exchanges them
 *     as rows for data parallelism); the embedding rows of a tied LM head keep their lookup
 *     part in a separate accumulator, added to the head part once, when the step is applied;
 *   - transcendental functions are loomrt's own (lrt_expf, lrt_log, lrt_sincos, ...). */
#ifndef LOOMRT_TRAIN_H
#define LOOMRT_TRAIN_H

#include "../base/threadpool.h"
#include "../formats/formats.h"

/* one named tensor of the flat parameter buffer */
typedef struct lrt_tparam {
  char name[48];
  int64_t rows, cols; /* a vector has rows = 1 */
  int64_t off;        /* element offset in the flat buffers */
  int decay;          /* 1: AdamW's weight decay applies (matrices); 0: norms and biases */
  float init_std;     /* init: N(0, std) when > 0; else the constant init_const */
  float init_const;
} lrt_tparam;

/* tensor indices of one layer (-1 when absent) */
typedef struct lrt_tlayer {
  int64_t attn_norm, attn_norm_b, wq, bq, wk, bk, wv, bv, wo, bo;
  int64_t ffn_norm, ffn_norm_b, w_gate, w_up, b_up, w_down, b_down;
} lrt_tlayer;

/* activations and scratch of one pass over B sequences of T tokens (grown when needed) */
typedef struct lrt_tact {
  int64_t B, T;
  size_t bytes;
  void *mem;
  int32_t *tok, *tgt;                  /* (M) */
  float *cs;                           /* (T, head_dim) RoPE cos/sin */
  float *xin;                          /* (L + 1, M, D): layer inputs; [L] the final residual */
  float *xn1, *xmid, *xn2;             /* (L, M, D) */
  float *q, *k, *v, *att;              /* (L, M, qd|kvd) after RoPE; att = attention output */
  float *P;                            /* (L, B, H, T, T) attention probabilities */
  float *g, *u, *a;                    /* (L, M, F) gate / up pre-activations, MLP activation */
  float *rs1, *mu1, *rs2, *mu2, *rsf, *muf; /* norm statistics (L, M) / (M) */
  float *xnf;                          /* (M, D) final norm output */
  float *logits;                       /* (M, V), then dlogits */
  float *loss;                         /* (M) per-token loss */
  /* backward scratch */
  float *dx, *dxm, *dn, *dn2, *tmpd;   /* (M, D) */
  float *df1, *df2;                    /* (M, F) */
  float *dq, *dk, *dv, *datt;          /* (M, qd|kvd) */
  float *dyt, *xt;                     /* transposed per sequence: (B, maxR, T), (B, maxK, T) */
  float *wt;                           /* a transposed weight (maxR * maxK) */
  float *thr;                          /* per thread: max(4 * maxK, 2 * T, 2 * D) */
  int64_t thr_stride;
} lrt_tact;

struct lrt_trainer {
  lrt_config cfg;
  lrt_pool *pool;
  int threads;
  int64_t n_tensors;
  lrt_tparam *ten;
  lrt_tlayer *L;
  int64_t tok_embd, pos_embd, out_norm, out_norm_b, lm_head; /* tensor indices, -1 absent */
  int64_t n_params;
  float *w, *G, *m, *v; /* weights, gradient accumulator (sums), AdamW moments */
  float *g_lookup;      /* tied head: the embedding lookup's part of the gradient (vocab, D) */
  float *inv_freq;      /* RoPE (head_dim / 2) */
  /* hyperparameters (lrt_trainer_set) */
  double lr, min_lr, wd, beta1, beta2, eps, clip, lr_scale;
  int64_t warmup, total_steps;
  int32_t schedule;
  /* optimizer state */
  int64_t step;         /* updates applied */
  double b1t, b2t;      /* beta1^step, beta2^step by repeated multiplication */
  /* accumulation of the current step */
  double loss_acc;      /* sum of the per-sequence loss sums, in sequence order */
  int64_t n_acc;        /* target tokens accumulated */
  /* results of the last applied step */
  double last_loss, last_gnorm, last_lr;
  lrt_tact act;
  float *parts;         /* norm-of-chunks partial sums */
  int64_t parts_cap;
};


#define LRT_TRAIN_CHUNK 4096 /* elements per optimizer / norm task (fixed: never the thread count) */

/* tmodel.c */
int32_t lrt_tr_new_config(const lrt_config *cfg, int threads, lrt_trainer **out);
void lrt_tr_init_weights(lrt_trainer *t, uint64_t seed);
/* a trainer holding the weights of an opened model (dequantized / widened to float) */
struct lrt_model;
int32_t lrt_tr_new_model(const struct lrt_model *m, int threads, lrt_trainer **out);
void lrt_tr_free(lrt_trainer *t);
/* tensor index of a name, -1 when absent */
int64_t lrt_tr_find(const lrt_trainer *t, const char *name);
/* tpass.c: one pass over tokens (B, T + 1) (inputs: the first T of each row, targets: the
 * last T). grads = 1 also runs the backward pass and adds to the accumulators. *loss_sum gets
 * the batch's loss sum (sequence sums added in order, in double), *count its targets. */
int32_t lrt_tr_pass(lrt_trainer *t, const int32_t *tokens, int64_t B, int64_t T, int grads, double *loss_sum,
                    int64_t *count);
/* logits of the last position of one sequence of n tokens (vocab floats) */
int32_t lrt_tr_last_logits(lrt_trainer *t, const int32_t *tokens, int64_t n, float *out);
/* optim.c */
int32_t lrt_tr_apply(lrt_trainer *t);
double lrt_tr_lr_at(const lrt_trainer *t, int64_t step); /* learning rate of update number step (1-based) */
/* the mean gradient of tensor i as the next apply would see it before clipping: (G [+ lookup]) / n_acc */
void lrt_tr_grad(const lrt_trainer *t, int64_t i, float *out);
uint64_t lrt_tr_fingerprint(const lrt_trainer *t);
size_t lrt_tr_state_size(const lrt_trainer *t);
void lrt_tr_state_write(const lrt_trainer *t, uint8_t *buf);
int32_t lrt_tr_state_read(lrt_trainer *t, const uint8_t *buf, size_t len);

#endif
