/* example.c -- loomrt from plain C: load a model, prompt it, stream the tokens.
 *
 *   cc -std=c11 -I csrc/include bindings/c/example.c -L csrc/build -lloomrt -o example
 *   LD_LIBRARY_PATH=csrc/build ./example model.gguf "Once upon a time" --max-tokens 32
 *
 * The generated text streams to stdout as it is produced; a summary goes to stderr:
 *   ids: <generated token ids>
 *   fnv1a64: <FNV-1a 64-bit hash of the generated UTF-8 text, 16 hex digits>
 *   finish: <finish reason number>
 * Options: --max-tokens N, --seed N, --temperature T, --top-p P, --top-k K, --threads N,
 *          --chat (render the prompt as one user message with the model's chat template),
 *          --memory (read a .gguf file into memory and open it with lrt_model_open_memory),
 *          --callback (use lrt_generate with a callback instead of the pull API). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loomrt.h"

typedef struct {
  uint64_t hash;
  int32_t ids[4096];
  int64_t n_ids;
} output;

static void emit(output *o, int32_t token, const char *text, size_t len) {
  for (size_t i = 0; i < len; i++) o->hash = (o->hash ^ (uint8_t)text[i]) * 0x100000001b3ULL;
  if (token >= 0 && o->n_ids < 4096) o->ids[o->n_ids++] = token;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
}

static int32_t on_token(void *user_data, int32_t token, const char *text, size_t len) {
  emit((output *)user_data, token, text, len);
  return 0; /* nonzero would stop the generation */
}

static int fail(const char *what, int32_t status) {
  fprintf(stderr, "%s failed: %s: %s\n", what, lrt_status_name(status), lrt_last_error());
  return 1;
}

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = n >= 0 ? (char *)malloc((size_t)n + 1) : NULL;
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
  fclose(f);
  *size = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL PROMPT [--max-tokens N] [--seed N] [--temperature T] [--top-p P] "
                    "[--top-k K] [--threads N] [--chat] [--memory] [--callback]\n", argv[0]);
    return 2;
  }
  const char *path = argv[1], *prompt = argv[2];
  long long max_tokens = 32, seed = 0, top_k = 0, threads = 1;
  double temperature = 0.0, top_p = 1.0;
  int chat = 0, memory = 0, callback = 0;
  for (int i = 3; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
    if (!strcmp(a, "--max-tokens")) max_tokens = atoll(v), i++;
    else if (!strcmp(a, "--seed")) seed = atoll(v), i++;
    else if (!strcmp(a, "--top-k")) top_k = atoll(v), i++;
    else if (!strcmp(a, "--threads")) threads = atoll(v), i++;
    else if (!strcmp(a, "--temperature")) temperature = atof(v), i++;
    else if (!strcmp(a, "--top-p")) top_p = atof(v), i++;
    else if (!strcmp(a, "--chat")) chat = 1;
    else if (!strcmp(a, "--memory")) memory = 1;
    else if (!strcmp(a, "--callback")) callback = 1;
    else { fprintf(stderr, "unknown option %s\n", a); return 2; }
  }

  lrt_model *model = NULL;
  int32_t st;
  if (memory) { /* as a game engine would: the GGUF bytes come from a packed asset */
    size_t size = 0;
    char *bytes = read_file(path, &size);
    if (!bytes) { fprintf(stderr, "cannot read %s\n", path); return 1; }
    const char *name = "model.gguf";
    size_t name_len = strlen(name);
    const void *data = bytes;
    st = lrt_model_open_memory(1, &name, &name_len, &data, &size, LRT_OPEN_COPY_BUFFERS, &model);
    free(bytes); /* copied: no longer needed */
  } else {
    st = lrt_model_open(path, strlen(path), 0, &model);
  }
  if (st) return fail("opening the model", st);

  lrt_session *session = NULL;
  if ((st = lrt_session_new(model, 0, (int32_t)threads, &session))) return fail("lrt_session_new", st);
  if ((st = lrt_session_set_float(session, LRT_PARAM_TEMPERATURE, temperature)) ||
      (st = lrt_session_set_float(session, LRT_PARAM_TOP_P, top_p)) ||
      (st = lrt_session_set_int(session, LRT_PARAM_TOP_K, top_k)) ||
      (st = lrt_session_set_int(session, LRT_PARAM_SEED, seed)) ||
      (!callback && (st = lrt_session_set_int(session, LRT_PARAM_MAX_TOKENS, max_tokens))))
    return fail("setting the sampler", st);

  char *text = (char *)prompt;
  size_t text_len = strlen(prompt);
  int32_t flags = LRT_PROMPT_ADD_SPECIAL | LRT_PROMPT_PARSE_SPECIAL;
  if (chat) {
    const char *role = "user";
    size_t role_len = 4, need = 0;
    st = lrt_chat_apply(model, LRT_CHAT_MODEL, 1, &role, &role_len, &prompt, &text_len, 1, NULL, 0, &need);
    if (st != LRT_ERR_BUFFER_TOO_SMALL && st != LRT_OK) return fail("lrt_chat_apply", st);
    text = (char *)malloc(need + 1);
    if ((st = lrt_chat_apply(model, LRT_CHAT_MODEL, 1, &role, &role_len, &prompt, &text_len, 1, text, need, &need)))
      return fail("lrt_chat_apply", st);
    text_len = need;
    flags = LRT_PROMPT_PARSE_SPECIAL; /* the rendered text carries its own bos */
  }

  output out = {0xcbf29ce484222325ULL, {0}, 0};
  if (callback) {
    if ((st = lrt_generate(session, text, text_len, flags, max_tokens, on_token, &out)))
      return fail("lrt_generate", st);
  } else { /* pull API: no callbacks */
    if ((st = lrt_session_prompt(session, text, text_len, flags))) return fail("lrt_session_prompt", st);
    for (;;) { /* a game loop would do one step per frame */
      int32_t token;
      const char *piece;
      size_t piece_len;
      if ((st = lrt_session_step(session, &token, &piece, &piece_len))) return fail("lrt_session_step", st);
      emit(&out, token, piece, piece_len);
      if (token < 0) break; /* end of generation; piece held the last bytes */
    }
  }
  if (chat) free(text);
  int64_t reason = 0;
  lrt_session_get_int(session, LRT_SESSION_FINISH_REASON, &reason);
  fprintf(stderr, "\nids:");
  for (int64_t i = 0; i < out.n_ids; i++) fprintf(stderr, " %d", out.ids[i]);
  fprintf(stderr, "\nfnv1a64: %016llx\nfinish: %lld\n", (unsigned long long)out.hash, (long long)reason);
  lrt_session_free(session);
  lrt_model_close(model);
  return 0;
}
