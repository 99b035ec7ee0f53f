/* tok_normalize.c -- the normalizer (pipeline step 2): Prepend, Replace with a literal
 * pattern, NFC and NFD (canonical decomposition, ordering and composition from the
 * generated tables of unicode_tables.c). */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode_tables.h"

/* ---- normalizer ------------------------------------------------------------------------------- */

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

static int nfd_push_cp(uint32_t **v, size_t *n, size_t *cap, uint32_t cp) {
  if (!lrt_tok_grow((void **)v, cap, *n + 1, sizeof(uint32_t))) return 0;
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
  if (ascii == n) return lrt_tok_sb_put(out, s, n) ? LRT_OK : lrt_tok_oom(); /* ASCII is invariant */
  for (size_t i = 0; i < n;) {
    int l;
    uint32_t cp = lrt_tok_u8_dec(u, n, i, &l);
    if (!decompose(&v, &nv, &cap, cp)) { free(v); return lrt_tok_oom(); }
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
      if (!run || !cls) { free(run); free(cls); free(v); return lrt_tok_oom(); }
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
    if (!lrt_tok_sb_put(out, e, (size_t)lrt_tok_u8_enc(v[i], e))) { free(v); return lrt_tok_oom(); }
  }
  free(v);
  return LRT_OK;
}

int32_t lrt_tok_normalize(const lrt_tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp) {
  out->n = 0;
  if (!lrt_tok_sb_put(out, s, n)) return lrt_tok_oom();
  for (int k = 0; k < t->n_nm; k++) {
    const nm_step *m = &t->nm[k];
    tmp->n = 0;
    switch (m->type) {
      case NM_PREPEND:
        if (out->n == 0) continue;
        if (!lrt_tok_sb_put(tmp, m->a, m->a_len) || !lrt_tok_sb_put(tmp, out->p, out->n)) return lrt_tok_oom();
        break;
      case NM_REPLACE: {
        size_t i = 0;
        if (m->a_len == 0) continue;
        while (i < out->n) {
          if (i + m->a_len <= out->n && memcmp(out->p + i, m->a, m->a_len) == 0) {
            if (!lrt_tok_sb_put(tmp, m->b, m->b_len)) return lrt_tok_oom();
            i += m->a_len;
          } else {
            if (!lrt_tok_sb_put(tmp, out->p + i, 1)) return lrt_tok_oom();
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
