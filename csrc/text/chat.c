/* chat.c -- chat templates rendered in C: which family a template belongs to (ChatML,
 * Llama 3, Llama 2 [INST], Zephyr), the ChatML default system message, and the rendering of
 * a conversation in a family, byte for byte as transformers renders the family's template.
 * Knows nothing of models: the caller (api/model_text.c) reads the template and the bos/eos
 * texts from the model's files. */
#include <stdlib.h>
#include <string.h>

#include "chat.h"

/* ---- small helpers ------------------------------------------------------------------------ */

static int has_sub(const char *s, size_t n, const char *sub) {
  size_t k = strlen(sub);
  if (k > n) return 0;
  for (size_t i = 0; i + k <= n; i++)
    if (s[i] == sub[0] && memcmp(s + i, sub, k) == 0) return 1;
  return 0;
}

static int eq(const char *a, size_t an, const char *b) {
  return an == strlen(b) && memcmp(a, b, an) == 0;
}

void lrt_chat_info_free(lrt_chat_info *t) {
  if (!t) return;
  free(t->chat_template);
  free(t->default_system);
  free(t->bos_text);
  free(t->eos_text);
  memset(t, 0, sizeof *t);
}

/* ---- chat template families -------------------------------------------------------------- */

/* Find a ChatML default system message: a string literal in the template that reads
 * '<|im_start|>system\n...<|im_end|>\n' (Jinja escapes undone). */
static int32_t chatml_default_system(lrt_chat_info *t) {
  const char *s = t->chat_template;
  size_t n = t->chat_template_len;
  static const char key[] = "<|im_start|>system";
  size_t kl = sizeof key - 1;
  int tries = 0;
  for (size_t i = 1; i + kl <= n && tries < 64; i++) { /* bounded work on untrusted templates */
    if (memcmp(s + i, key, kl) != 0) continue;
    tries++;
    char q = s[i - 1];
    if (q != '\'' && q != '"') continue;
    /* decode the literal from i to the closing quote */
    char *buf = (char *)malloc(n - i + 1);
    if (!buf) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    size_t bl = 0, j = i;
    int closed = 0;
    while (j < n) {
      char c = s[j];
      if (c == q) { closed = 1; break; }
      if (c == '\\' && j + 1 < n) {
        char e = s[j + 1];
        buf[bl++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        j += 2;
        continue;
      }
      buf[bl++] = c;
      j++;
    }
    static const char head[] = "<|im_start|>system\n", tail[] = "<|im_end|>\n";
    size_t hl = sizeof head - 1, tl = sizeof tail - 1;
    if (closed && bl > hl + tl && memcmp(buf, head, hl) == 0 && memcmp(buf + bl - tl, tail, tl) == 0 &&
        !has_sub(buf + hl, bl - hl - tl, "<|im_")) {
      t->default_system = lrt_dup_mem(buf + hl, bl - hl - tl);
      t->default_system_len = bl - hl - tl;
      free(buf);
      return t->default_system ? LRT_OK : lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    free(buf);
  }
  return LRT_OK;
}

/* Which family a template belongs to, by its content. Conservative: a template that
 * renders differently from the family in C (extra bos/eos, a missing <|im_end|>, tool or
 * date headers, ...) is "unknown" (-1) rather than rendered wrong. */
int32_t lrt_chat_detect_family(lrt_chat_info *t) {
  const char *s = t->chat_template;
  size_t n = t->chat_template_len;
  t->chat_format = -1;
  if (n == 0) {
    t->chat_format = LRT_CHAT_CHATML; /* no template: ChatML, as the Python package does */
    return LRT_OK;
  }
  if (has_sub(s, n, "<|im_start|>") && has_sub(s, n, "<|im_end|>")) {
    if (has_sub(s, n, "bos_token") || has_sub(s, n, "eos_token") || has_sub(s, n, "not loop.last")) return LRT_OK;
    t->chat_format = LRT_CHAT_CHATML;
    return chatml_default_system(t);
  }
  if (has_sub(s, n, "<|start_header_id|>") && has_sub(s, n, "<|eot_id|>")) {
    if (has_sub(s, n, "bos_token") && !has_sub(s, n, "Cutting Knowledge") && !has_sub(s, n, "tools"))
      t->chat_format = LRT_CHAT_LLAMA3;
    return LRT_OK;
  }
  if (has_sub(s, n, "bos_token + '[INST] '") && has_sub(s, n, "<<SYS>>")) {
    t->chat_format = LRT_CHAT_LLAMA2;
    return LRT_OK;
  }
  if (has_sub(s, n, "<|user|>") && has_sub(s, n, "<|system|>") && has_sub(s, n, "<|assistant|>") &&
      has_sub(s, n, "eos_token") && !has_sub(s, n, "<|end|>"))
    t->chat_format = LRT_CHAT_ZEPHYR;
  return LRT_OK;
}

/* ---- chat rendering ------------------------------------------------------------------------ */

typedef struct {
  char *out;
  size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->len < b->cap && b->out) {
    size_t k = b->cap - b->len < n ? b->cap - b->len : n;
    memcpy(b->out + b->len, s, k);
  }
  b->len += n;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* Length of the Unicode white space (Python's str.isspace) at s[0..n), or 0. */
static size_t space_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (n >= 2 && c == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
  if (n >= 3) {
    unsigned cp = 0;
    if ((c & 0xf0) == 0xe0) cp = ((c & 0x0f) << 12) | ((s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
        cp == 0x205f || cp == 0x3000)
      return 3;
  }
  return 0;
}

/* Python's str.strip(): drop Unicode white space at both ends. */
static void strip(const char **s, size_t *n) {
  const unsigned char *p = (const unsigned char *)*s;
  size_t a = 0, b = *n, k;
  while (a < b && (k = space_len(p + a, b - a))) a += k;
  for (;;) { /* from the right: try 1-, 2- and 3-byte white space ending at b */
    if (b > a && (k = space_len(p + b - 1, 1)) == 1) { b--; continue; }
    if (b >= a + 2 && space_len(p + b - 2, 2) == 2) { b -= 2; continue; }
    if (b >= a + 3 && space_len(p + b - 3, 3) == 3) { b -= 3; continue; }
    break;
  }
  *s = (const char *)p + a;
  *n = b - a;
}

/* Render in `format` (a family, not LRT_CHAT_MODEL; arguments already checked). t: the
 * model's template facts, or NULL for the family's usual bos/eos texts. */
int32_t lrt_chat_render(const lrt_chat_info *t, int32_t format, int64_t n_msg, const char *const *roles,
                        const size_t *roles_lens, const char *const *contents, const size_t *contents_lens,
                        int32_t add_gen, char *out, size_t capacity, size_t *out_len) {
  int own_family = t && t->chat_format == format;
  const char *bos = NULL, *eos = NULL;
  size_t bos_len = 0, eos_len = 0;
  if (t) {
    bos = t->bos_text ? t->bos_text : "";
    bos_len = t->bos_len;
    eos = t->eos_text ? t->eos_text : "";
    eos_len = t->eos_len;
  } else {
    bos = format == LRT_CHAT_LLAMA3 ? "<|begin_of_text|>" : "<s>";
    bos_len = strlen(bos);
    eos = format == LRT_CHAT_LLAMA3 ? "<|eot_id|>" : "</s>";
    eos_len = strlen(eos);
  }
  sbuf b = {out, capacity, 0};
#define ROLE(i) roles[i] ? roles[i] : "", roles_lens[i]
#define CONTENT(i) contents[i] ? contents[i] : "", contents_lens[i]
  switch (format) {
    case LRT_CHAT_CHATML:
      if (own_family && t->default_system && n_msg > 0 && !eq(ROLE(0), "system")) {
        puts_(&b, "<|im_start|>system\n");
        put(&b, t->default_system, t->default_system_len);
        puts_(&b, "<|im_end|>\n");
      }
      for (int64_t i = 0; i < n_msg; i++) {
        puts_(&b, "<|im_start|>");
        put(&b, ROLE(i));
        puts_(&b, "\n");
        put(&b, CONTENT(i));
        puts_(&b, "<|im_end|>\n");
      }
      if (add_gen) puts_(&b, "<|im_start|>assistant\n");
      break;
    case LRT_CHAT_LLAMA3:
      for (int64_t i = 0; i < n_msg; i++) {
        const char *c = contents[i] ? contents[i] : "";
        size_t cl = contents_lens[i];
        strip(&c, &cl);
        if (i == 0) put(&b, bos, bos_len);
        puts_(&b, "<|start_header_id|>");
        put(&b, ROLE(i));
        puts_(&b, "<|end_header_id|>\n\n");
        put(&b, c, cl);
        puts_(&b, "<|eot_id|>");
      }
      if (add_gen) puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
    case LRT_CHAT_LLAMA2: {
      int64_t first = 0;
      const char *sys = NULL;
      size_t sys_len = 0;
      if (n_msg > 0 && eq(ROLE(0), "system")) {
        sys = contents[0] ? contents[0] : "";
        sys_len = contents_lens[0];
        first = 1;
      }
      for (int64_t i = first; i < n_msg; i++) {
        int is_user = eq(ROLE(i), "user");
        if (is_user != ((i - first) % 2 == 0))
          return lrt_err(LRT_ERR_INVALID_ARGUMENT, "Llama 2 chat: conversation roles must alternate user/assistant/user/assistant/... "
                         "(after an optional first system message)");
        if (is_user) {
          put(&b, bos, bos_len);
          puts_(&b, "[INST] ");
          if (i == first && sys) { /* "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content, stripped */
            const char *c = contents[i] ? contents[i] : "";
            size_t cl = contents_lens[i];
            /* the joined string starts with "<<SYS>>": only its end can be stripped */
            const char *end_c = c;
            size_t end_l = cl;
            strip(&end_c, &end_l);
            if (end_l == 0) { /* content all white space: strip reaches into the system part */
              char *joined = (char *)malloc(sys_len + 20);
              if (!joined) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
              size_t jl = 0;
              memcpy(joined, "<<SYS>>\n", 8); jl = 8;
              memcpy(joined + jl, sys, sys_len); jl += sys_len;
              memcpy(joined + jl, "\n<</SYS>>\n\n", 11); jl += 11;
              const char *js = joined;
              strip(&js, &jl);
              put(&b, js, jl);
              free(joined);
            } else {
              size_t keep = (size_t)(end_c - c) + end_l; /* strip the end only */
              puts_(&b, "<<SYS>>\n");
              put(&b, sys, sys_len);
              puts_(&b, "\n<</SYS>>\n\n");
              put(&b, c, keep);
            }
          } else {
            const char *c = contents[i] ? contents[i] : "";
            size_t cl = contents_lens[i];
            strip(&c, &cl);
            put(&b, c, cl);
          }
          puts_(&b, " [/INST]");
        } else if (eq(ROLE(i), "assistant")) {
          const char *c = contents[i] ? contents[i] : "";
          size_t cl = contents_lens[i];
          strip(&c, &cl);
          puts_(&b, " ");
          put(&b, c, cl);
          puts_(&b, " ");
          put(&b, eos, eos_len);
        }
      }
      break;
    }
    case LRT_CHAT_ZEPHYR:
      for (int64_t i = 0; i < n_msg; i++) {
        if (eq(ROLE(i), "user") || eq(ROLE(i), "system") || eq(ROLE(i), "assistant")) {
          puts_(&b, "<|");
          put(&b, ROLE(i));
          puts_(&b, "|>\n");
          put(&b, CONTENT(i));
          put(&b, eos, eos_len);
          puts_(&b, "\n");
        }
        if (i == n_msg - 1 && add_gen) puts_(&b, "<|assistant|>\n");
      }
      break;
  }
#undef ROLE
#undef CONTENT
  *out_len = b.len;
  if (b.len > capacity)
    return lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "the rendered chat needs %zu bytes but the buffer holds %zu", b.len, capacity);
  return LRT_OK;
}

