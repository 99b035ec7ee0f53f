/* receipt.c -- make a generation receipt without Python, through the public C API only, so a
 * receipt can be produced on any target the library builds for (a phone, a WASI runtime, an
 * emulated big-endian machine) and verified elsewhere with `loomrt verify`.
 *
 *   lrt_receipt MODEL --prompt-ids 1,2,3 [-n 32] [--temperature T] [--top-k K] [--top-p P]
 *               [--min-p M] [--repetition-penalty R] [--seed S] [--threads N] [--context C]
 *
 * Prints the receipt (docs/determinism.md, receipt version 1) on stdout. Same generation
 * loop as loomrt.Model.generate: evaluate the prompt, then per step sample, record the logits
 * row and the token, stop at an end-of-sequence id of the model or after n tokens, evaluate
 * the token. Model hash: the SHA-256 of a .gguf file, or of the sha256sum manifest of a
 * folder's config.json, generation_config.json (when present) and model.safetensors (sharded
 * folders are not supported here). The tokenizer hash is written as null (not computed here;
 * the replay does not depend on it). Exit status 0, or 1 with a message on stderr. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/loomrt.h"
#include "sha256.h"

#if defined(__x86_64__) || defined(_M_X64)
#define MACHINE "x86_64"
#elif defined(__aarch64__) || defined(_M_ARM64)
#define MACHINE "aarch64"
#elif defined(__s390x__)
#define MACHINE "s390x"
#elif defined(__wasm32__)
#define MACHINE "wasm32"
#elif defined(__i386__) || defined(_M_IX86)
#define MACHINE "x86"
#else
#define MACHINE "unknown"
#endif
#if defined(_WIN32)
#define SYSTEM "Windows"
#elif defined(__APPLE__)
#define SYSTEM "Darwin"
#elif defined(__wasi__)
#define SYSTEM "WASI"
#elif defined(__linux__)
#define SYSTEM "Linux"
#else
#define SYSTEM "unknown"
#endif

static int fail(const char *what) {
  fprintf(stderr, "lrt_receipt: %s\n", what);
  return 1;
}

#define CALL(x) do { int32_t st_ = (x); if (st_ != LRT_OK) { \
    fprintf(stderr, "lrt_receipt: %s: %s\n", lrt_status_name(st_), lrt_last_error()); return 1; } } while (0)

/* ---- hashing ------------------------------------------------------------------------------ */

static int sha256_file(const char *path, uint8_t out[32], long long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  static unsigned char buf[1 << 16];
  lrt_sha256 h;
  lrt_sha256_init(&h);
  long long n = 0;
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
    lrt_sha256_update(&h, buf, got);
    n += (long long)got;
  }
  int ok = !ferror(f);
  fclose(f);
  lrt_sha256_final(&h, out);
  *size = n;
  return ok;
}

static void put_u32le(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* Little-endian float32 bits, NaNs canonicalised to 0x7fc00000. */
static void canonical_row(const float *row, int64_t n, uint8_t *out) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &row[i], 4);
    if (row[i] != row[i]) u = 0x7fc00000u;
    put_u32le(out + 4 * i, u);
  }
}

/* ---- JSON output ----------------------------------------------------------------------------- */

static void json_str(const char *s, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

static void json_ids(const int32_t *ids, int64_t n) {
  putchar('[');
  for (int64_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
  putchar(']');
}

/* ---- arguments ------------------------------------------------------------------------------- */

static int parse_ids(const char *s, int32_t **out, int64_t *n) {
  int64_t cap = 16, k = 0;
  int32_t *ids = (int32_t *)malloc((size_t)cap * sizeof(int32_t));
  if (!ids) return 0;
  while (*s) {
    while (*s == ',' || *s == ' ') s++;
    if (!*s) break;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > 0x7fffffffL) { free(ids); return 0; }
    if (k == cap) {
      int32_t *g = (int32_t *)realloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
      if (!g) { free(ids); return 0; }
      ids = g;
    }
    ids[k++] = (int32_t)v;
    s = end;
  }
  *out = ids;
  *n = k;
  return k > 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return fail("usage: lrt_receipt MODEL --prompt-ids 1,2,3 [-n N] [--temperature T] ...");
  const char *model_path = argv[1];
  const char *ids_arg = NULL;
  long long max_tokens = 32, top_k = 0, seed = 0, threads = 1, context = 0;
  double temperature = 0.0, top_p = 1.0, min_p = 0.0, rep = 1.0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) return fail("every option takes a value");
    const char *v = argv[++i];
    if (!strcmp(a, "--prompt-ids")) ids_arg = v;
    else if (!strcmp(a, "-n")) max_tokens = strtoll(v, NULL, 10);
    else if (!strcmp(a, "--temperature")) temperature = strtod(v, NULL);
    else if (!strcmp(a, "--top-k")) top_k = strtoll(v, NULL, 10);
    else if (!strcmp(a, "--top-p")) top_p = strtod(v, NULL);
    else if (!strcmp(a, "--min-p")) min_p = strtod(v, NULL);
    else if (!strcmp(a, "--repetition-penalty")) rep = strtod(v, NULL);
    else if (!strcmp(a, "--seed")) seed = strtoll(v, NULL, 10);
    else if (!strcmp(a, "--threads")) threads = strtoll(v, NULL, 10);
    else if (!strcmp(a, "--context")) context = strtoll(v, NULL, 10);
    else return fail("unknown option");
  }
  int32_t *prompt = NULL;
  int64_t n_prompt = 0;
  if (!ids_arg || !parse_ids(ids_arg, &prompt, &n_prompt)) return fail("--prompt-ids needs token ids, e.g. 1,5,9");
  if (max_tokens < 0) return fail("-n must be >= 0");

  /* model hash */
  size_t plen = strlen(model_path);
  int is_gguf = plen >= 5 && !strcmp(model_path + plen - 5, ".gguf");
  char hash_hex[65];
  char files_json[4096];
  size_t fj = 0;
  files_json[0] = 0;
  if (is_gguf) {
    uint8_t d[32];
    long long size;
    if (!sha256_file(model_path, d, &size)) return fail("cannot read the model file");
    lrt_sha256_hex(d, hash_hex);
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    fj += (size_t)snprintf(files_json, sizeof files_json, "{\"name\": \"%s\", \"size\": %lld, \"sha256\": \"%s\"}",
                           base, size, hash_hex);
  } else {
    static const char *names[] = {"config.json", "generation_config.json", "model.safetensors"}; /* byte order */
    lrt_sha256 man;
    lrt_sha256_init(&man);
    for (int k = 0; k < 3; k++) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", model_path, names[k]);
      uint8_t d[32];
      long long size;
      if (!sha256_file(p, d, &size)) {
        if (k == 1) continue; /* optional */
        return fail(k == 2 ? "the folder has no model.safetensors (sharded folders: use `loomrt generate --receipt`)"
                           : "cannot read config.json");
      }
      char hx[65];
      lrt_sha256_hex(d, hx);
      char line[160];
      int ln = snprintf(line, sizeof line, "%s  %s\n", hx, names[k]);
      lrt_sha256_update(&man, line, (size_t)ln);
      fj += (size_t)snprintf(files_json + fj, sizeof files_json - fj, "%s{\"name\": \"%s\", \"size\": %lld, \"sha256\": \"%s\"}",
                             fj ? ", " : "", names[k], size, hx);
    }
    uint8_t d[32];
    lrt_sha256_final(&man, d);
    lrt_sha256_hex(d, hash_hex);
  }

  lrt_model *m = NULL;
  lrt_session *s = NULL;
  CALL(lrt_model_open(model_path, plen, 0, &m));
  int64_t vocab, ctx_max, n_eos;
  CALL(lrt_model_get_int(m, LRT_INFO_VOCAB_SIZE, &vocab));
  CALL(lrt_model_get_int(m, LRT_INFO_CONTEXT_LENGTH, &ctx_max));
  CALL(lrt_model_get_int(m, LRT_INFO_EOS_COUNT, &n_eos));
  for (int64_t i = 0; i < n_prompt; i++)
    if (prompt[i] >= vocab) return fail("a prompt id is outside the vocabulary");
  int64_t ctx = context > 0 ? context : ctx_max;
  CALL(lrt_session_new(m, ctx, (int32_t)threads, &s));
  CALL(lrt_session_set_float(s, LRT_PARAM_TEMPERATURE, temperature));
  CALL(lrt_session_set_int(s, LRT_PARAM_TOP_K, top_k));
  CALL(lrt_session_set_float(s, LRT_PARAM_TOP_P, top_p));
  CALL(lrt_session_set_float(s, LRT_PARAM_MIN_P, min_p));
  CALL(lrt_session_set_float(s, LRT_PARAM_REPEAT_PENALTY, rep));
  CALL(lrt_session_set_int(s, LRT_PARAM_SEED, seed));

  int32_t *out = (int32_t *)malloc((size_t)(max_tokens + 1) * sizeof(int32_t));
  char (*digests)[65] = (char (*)[65])malloc((size_t)(max_tokens + 1) * 65);
  uint8_t *rowbuf = (uint8_t *)malloc((size_t)vocab * 4);
  if (!out || !digests || !rowbuf) return fail("out of memory");
  lrt_sha256 all_logits, all_tokens;
  lrt_sha256_init(&all_logits);
  lrt_sha256_init(&all_tokens);
  uint8_t roll[32];
  {
    lrt_sha256 r0;
    lrt_sha256_init(&r0);
    lrt_sha256_update(&r0, "loomrt-steps-v1", 15);
    lrt_sha256_final(&r0, roll);
  }
  const char *finish = "length";
  int64_t steps = 0;
  CALL(lrt_session_eval(s, prompt, n_prompt, 0));
  for (int64_t i = 0; i < max_tokens; i++) {
    const float *lg;
    int64_t rows, vv;
    CALL(lrt_session_logits(s, &lg, &rows, &vv));
    canonical_row(lg + (rows - 1) * vv, vv, rowbuf);
    int32_t tok;
    CALL(lrt_session_sample(s, &tok));
    uint8_t d[32], tb[4];
    lrt_sha256 h;
    lrt_sha256_init(&h);
    lrt_sha256_update(&h, rowbuf, (size_t)vv * 4);
    lrt_sha256_final(&h, d);
    lrt_sha256_hex(d, digests[steps]);
    lrt_sha256_update(&all_logits, rowbuf, (size_t)vv * 4);
    put_u32le(tb, (uint32_t)tok);
    lrt_sha256_update(&all_tokens, tb, 4);
    lrt_sha256_init(&h);
    lrt_sha256_update(&h, roll, 32);
    lrt_sha256_update(&h, d, 32);
    lrt_sha256_update(&h, tb, 4);
    lrt_sha256_final(&h, roll);
    out[steps++] = tok;
    int is_eos = 0;
    for (int64_t e = 0; e < n_eos; e++) {
      int32_t id;
      CALL(lrt_model_eos_id(m, e, &id));
      if (id == tok) is_eos = 1;
    }
    if (is_eos) { finish = "stop"; break; }
    if (i + 1 == max_tokens) break;
    if (lrt_session_position(s) >= ctx) { finish = "context"; break; }
    CALL(lrt_session_eval(s, &tok, 1, 0));
  }
  uint8_t d[32];
  char logits_hex[65], tokens_hex[65], roll_hex[65];
  lrt_sha256_final(&all_logits, d);
  lrt_sha256_hex(d, logits_hex);
  lrt_sha256_final(&all_tokens, d);
  lrt_sha256_hex(d, tokens_hex);
  lrt_sha256_hex(roll, roll_hex);

  const char *name, *arch;
  size_t name_len, arch_len;
  CALL(lrt_model_get_str(m, LRT_STR_NAME, &name, &name_len));
  CALL(lrt_model_get_str(m, LRT_STR_ARCHITECTURE, &arch, &arch_len));
  printf("{\n \"format\": \"loomrt-receipt\",\n \"version\": 1,\n \"loomrt_version\": \"%s\",\n"
         " \"numerics_version\": %d,\n", lrt_version_string(), lrt_numerics_version());
  printf(" \"model\": {\"hash\": \"%s\", \"hash_scheme\": \"loomrt-files-v1\", \"files\": [%s], \"name\": ",
         hash_hex, files_json);
  json_str(name, name_len);
  printf(", \"architecture\": ");
  json_str(arch, arch_len);
  printf(", \"quantize\": null, \"int8_activations\": false},\n \"tokenizer\": {\"hash\": null},\n"); /* the tool opens models as stored */
  printf(" \"sampling\": {\"min_p\": %.17g, \"repetition_penalty\": %.17g, \"seed\": %lld, \"temperature\": %.17g, "
         "\"top_k\": %lld, \"top_p\": %.17g},\n", min_p, rep, seed, temperature, top_k, top_p);
  printf(" \"max_tokens\": %lld,\n \"context_length\": %lld,\n \"stop\": [],\n \"chat\": false,\n",
         max_tokens, (long long)ctx);
  printf(" \"prompt_token_ids\": ");
  json_ids(prompt, n_prompt);
  printf(",\n \"output_token_ids\": ");
  json_ids(out, steps);
  printf(",\n \"finish_reason\": \"%s\",\n \"step_logits_sha256\": [", finish);
  for (int64_t i = 0; i < steps; i++) printf("%s\"%s\"", i ? ", " : "", digests[i]);
  printf("],\n \"logits_rolling_sha256\": \"%s\",\n \"tokens_sha256\": \"%s\",\n \"logits_sha256\": \"%s\",\n",
         roll_hex, tokens_hex, logits_hex);
  printf(" \"made_on\": {\"kernel_path\": \"%s\", \"machine\": \"%s\", \"system\": \"%s\", \"threads\": %lld, "
         "\"tool\": \"lrt_receipt\"}\n}\n", lrt_kernel_path(), MACHINE, SYSTEM, threads);
  free(out); free(digests); free(rowbuf); free(prompt);
  lrt_session_free(s);
  lrt_model_close(m);
  return 0;
}
