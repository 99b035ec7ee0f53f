/* test_parsers.c -- unit and robustness tests for json.c, safetensors.c, gguf.c, utf8.c.
 *
 * Build and run: make -C csrc/tests        (sanitizers: make -C csrc/tests sanitize)
 *
 * Covers: valid and invalid JSON (every invalid case must fail with LRT_ERR_FORMAT and a
 * "line L, column C" message), number conversion bit-exact against the C library's
 * correctly rounded strtod, safetensors and GGUF buffers built in memory (valid, truncated
 * at every length, corrupted), and a fixed-seed random-mutation loop over each valid
 * buffer that must never crash (run it under ASan/UBSan). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../formats/formats.h"

static int g_checks, g_failures;

#define CHECK(cond, ...)                                        \
  do {                                                          \
    g_checks++;                                                 \
    if (!(cond)) {                                              \
      g_failures++;                                             \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
      printf(__VA_ARGS__);                                      \
      printf("\n");                                             \
    }                                                           \
  } while (0)

/* Deterministic PRNG (xorshift64*) for the mutation and number loops. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return g_rng * 0x2545F4914F6CDD1Dull;
}
static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

static uint64_t bits_of(double x) {
  uint64_t u;
  memcpy(&u, &x, 8);
  return u;
}

/* Copy into an exact-size heap block so ASan sees any overread. */
static uint8_t *dup_bytes(const void *p, size_t n) {
  uint8_t *b = (uint8_t *)malloc(n ? n : 1);
  if (!b) {
    printf("out of memory in test\n");
    exit(2);
  }
  if (n) memcpy(b, p, n);
  return b;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

static void test_utf8(void) {
  struct { const char *s; int ok; } cases[] = {
      {"", 1}, {"abc", 1}, {"\xC3\xA9", 1}, {"\xE2\x82\xAC", 1}, {"\xF0\x9F\x98\x80", 1},
      {"\xF4\x8F\xBF\xBF", 1}, {"\xED\x9F\xBF", 1}, {"\xEE\x80\x80", 1},
      {"\xC0\xAF", 0}, {"\xC1\xBF", 0}, {"\xE0\x80\xAF", 0}, {"\xE0\x9F\xBF", 0},
      {"\xF0\x80\x80\xAF", 0}, {"\xF0\x8F\xBF\xBF", 0}, {"\xED\xA0\x80", 0}, {"\xED\xBF\xBF", 0},
      {"\xF4\x90\x80\x80", 0}, {"\xF5\x80\x80\x80", 0}, {"\xFF", 0}, {"\x80", 0},
      {"\xC3", 0}, {"\xE2\x82", 0}, {"\xF0\x9F\x98", 0}, {"a\xC3(", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(lrt_utf8_valid(cases[i].s, strlen(cases[i].s)) == cases[i].ok, "utf8 case %zu", i);
  CHECK(lrt_utf8_valid("a\0b", 3) == 1, "embedded NUL is valid UTF-8");
}

/* ---- JSON ------------------------------------------------------------------------------- */

static lj_doc *parse_ok(const char *text, size_t len) {
  lj_doc *d = NULL;
  char *copy = (char *)dup_bytes(text, len);
  int32_t st = lj_parse(copy, len, "test.json", &d);
  free(copy); /* the DOM must not point into the input */
  CHECK(st == LRT_OK && d, "expected success for %.60s: %s", text, lrt_last_error());
  return d;
}

static void parse_bad(const char *text, size_t len) {
  lj_doc *d = (lj_doc *)(uintptr_t)1;
  lrt_err_clear();
  char *copy = (char *)dup_bytes(text, len);
  int32_t st = lj_parse(copy, len, "bad.json", &d);
  free(copy);
  CHECK(st == LRT_ERR_FORMAT, "expected LRT_ERR_FORMAT for [%.*s], got %d", (int)len, text, st);
  CHECK(d == NULL, "out must be NULL on failure");
  CHECK(strncmp(lrt_last_error(), "bad.json: line ", 15) == 0, "message: %s", lrt_last_error());
  if (st == LRT_OK) lj_free(d);
}

static void test_json_valid(void) {
  const char *t = "  {\"a\": [1, 2.5, {\"b\": null}], \"c\": {\"d\": true, \"e\": false},\n"
                  "   \"s\": \"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\ud83d\\ude00\","
                  "   \"u\": \"h\xC3\xA9llo \xF0\x9F\x98\x80\", \"z\": \"a\\u0000b\", \"\": [] }  \n";
  lj_doc *d = parse_ok(t, strlen(t));
  if (!d) return;
  const lj_value *r = lj_root(d);
  CHECK(r->type == LJ_OBJECT && r->count == 6, "root object");
  const lj_value *a = lj_get(r, "a");
  CHECK(a && a->type == LJ_ARRAY && a->count == 3, "array a");
  if (a && a->count == 3) {
    CHECK(a->items[0].is_integer && a->items[0].integer == 1, "a[0]");
    CHECK(a->items[1].type == LJ_NUMBER && a->items[1].number == 2.5 && !a->items[1].is_integer, "a[1]");
    const lj_value *b = lj_get(&a->items[2], "b");
    CHECK(b && b->type == LJ_NULL, "a[2].b");
  }
  const lj_value *c = lj_get(r, "c");
  CHECK(c && lj_get(c, "d")->boolean == 1 && lj_get(c, "e")->type == LJ_BOOL &&
            lj_get(c, "e")->boolean == 0, "c");
  const lj_value *s = lj_get(r, "s");
  const char want[] = "x\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  CHECK(s && s->str_len == sizeof want - 1 && !memcmp(s->str, want, sizeof want), "escapes");
  const lj_value *u = lj_get(r, "u");
  CHECK(u && !strcmp(u->str, "h\xC3\xA9llo \xF0\x9F\x98\x80"), "raw utf-8");
  const lj_value *z = lj_get(r, "z");
  CHECK(z && z->str_len == 3 && !memcmp(z->str, "a\0b", 4), "\\u0000");
  CHECK(lj_get(r, "") && lj_get(r, "")->type == LJ_ARRAY, "empty key");
  CHECK(lj_get(r, "missing") == NULL && lj_get(a, "a") == NULL, "lj_get misses");
  lj_free(d);

  /* scalars at top level, BOM, integers */
  struct { const char *t; int is_int; int64_t v; } ints[] = {
      {"0", 1, 0}, {"-0", 1, 0}, {"42", 1, 42}, {"\xEF\xBB\xBF 7", 1, 7},
      {"9223372036854775807", 1, INT64_MAX}, {"-9223372036854775808", 1, INT64_MIN},
      {"9223372036854775808", 0, 0}, {"-9223372036854775809", 0, 0}, {"1.0", 0, 0},
      {"1e2", 0, 0}, {"123456789012345678901234567890", 0, 0},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    d = parse_ok(ints[i].t, strlen(ints[i].t));
    if (!d) continue;
    const lj_value *v = lj_root(d);
    CHECK(v->type == LJ_NUMBER && v->is_integer == ints[i].is_int, "is_integer of %s", ints[i].t);
    if (ints[i].is_int) CHECK(v->integer == ints[i].v, "integer of %s", ints[i].t);
    lj_free(d);
  }
  d = parse_ok("-0", 2);
  if (d) {
    CHECK(bits_of(lj_root(d)->number) == bits_of(-0.0), "-0 keeps its sign");
    lj_free(d);
  }

  /* depth: 64 nested containers are fine, 65 are not */
  char deep[200];
  for (int n = 63; n <= 65; n++) {
    size_t k = 0;
    for (int i = 0; i < n; i++) deep[k++] = '[';
    for (int i = 0; i < n; i++) deep[k++] = ']';
    if (n <= 64) {
      d = parse_ok(deep, k);
      lj_free(d);
    } else {
      parse_bad(deep, k);
    }
  }

  /* a large object exercises the sorted duplicate check */
  char big[8192];
  size_t k = 0;
  big[k++] = '{';
  for (int i = 0; i < 300; i++) k += (size_t)sprintf(big + k, "%s\"key%d\":%d", i ? "," : "", i, i);
  big[k++] = '}';
  d = parse_ok(big, k);
  if (d) {
    CHECK(lj_root(d)->count == 300 && lj_get(lj_root(d), "key299")->integer == 299, "big object");
    lj_free(d);
  }
  k -= 1;
  k += (size_t)sprintf(big + k, ",\"key17\":1}");
  parse_bad(big, k);
}

static void test_json_invalid(void) {
  static const char *bad[] = {
      "", " ", "{", "[", "]", "}", "[1,]", "{\"a\":1,}", "[01]", "[-01]", "[1.]", "[.5]", "[+1]",
      "[1e]", "[1e+]", "[-]", "-", "[NaN]", "[Infinity]", "[-Infinity]", "'a'", "{a:1}",
      "{'a':1}", "[\"\\x\"]", "[\"\\u12\"]", "[\"\\u12G4\"]", "[\"\\ud800\"]", "[\"\\udc00\"]",
      "[\"\\ud800\\u0041\"]", "[\"\\ud800\\\"]", "[\"a\tb\"]", "[\"\x01\"]", "[\"a\nb\"]",
      "\"\xC0\xAF\"", "\"\xED\xA0\x80\"", "\"\xF4\x90\x80\x80\"", "\"\xFF\"", "\"\xC3\"",
      "\"\xE2\x82\"", "[1] [2]", "{\"a\":1 \"b\":2}", "[1 2]", "tru", "nul", "fals", "True",
      "[true false]", "{\"a\" 1}", "{\"a\":1,\"a\":2}", "1e400", "-1e400", "1e99999999999999999",
      "[1,,2]", "[,1]", "/* c */ 1", "[1]//", "# x\n1", "\"abc", "[\"a\\\"]", "{\"a\":}",
      "{\"a\"}", "{,}", "{\"a\":1,,}", "[\x7F]", "\xEF\xBB", "0x10", "1_000", ".", "-.5",
      "[1,]", "\"\\U0041\"", "[\xC3\xA9]", "{\"a\":[1,2}", "[{]}", "{\"a\":{\"b\":1}", "\v1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) parse_bad(bad[i], strlen(bad[i]));
  parse_bad("1\0", 2);      /* NUL after the value */
  parse_bad("[\"a\0\"]", 6); /* raw NUL in a string */

  /* message format: line and column of a duplicate key */
  const char *dup = "{\n  \"a\": 1,\n  \"a\": 2\n}";
  lj_doc *d = NULL;
  CHECK(lj_parse(dup, strlen(dup), "cfg.json", &d) == LRT_ERR_FORMAT, "dup");
  CHECK(strstr(lrt_last_error(), "cfg.json: line 3, column 3: duplicate key \"a\"") != NULL,
        "message: %s", lrt_last_error());
  const char *col = "[1,\n \xC3\xA9\xC3\xA9 x]";
  CHECK(lj_parse(col, strlen(col), "c.json", &d) == LRT_ERR_FORMAT, "col");
  CHECK(strstr(lrt_last_error(), "c.json: line 2, column 2:") != NULL, "message: %s",
        lrt_last_error());
}

/* Compare our conversion with strtod (glibc's is correctly rounded). */
static int number_matches(const char *lit, int verbose) {
  lj_doc *d = NULL;
  errno = 0;
  double want = strtod(lit, NULL);
  int overflow = errno == ERANGE && isinf(want);
  int32_t st = lj_parse(lit, strlen(lit), "num", &d);
  if (overflow) {
    if (st == LRT_ERR_FORMAT) return 1;
    if (verbose) printf("  %s: strtod overflows but parse returned %d\n", lit, st);
    lj_free(d);
    return 0;
  }
  if (st != LRT_OK) {
    if (verbose) printf("  %s: parse failed: %s\n", lit, lrt_last_error());
    return 0;
  }
  double got = lj_root(d)->number;
  lj_free(d);
  if (bits_of(got) != bits_of(want)) {
    if (verbose) printf("  %s: got %.17g (0x%016llx), strtod %.17g (0x%016llx)\n", lit, got,
                        (unsigned long long)bits_of(got), want, (unsigned long long)bits_of(want));
    return 0;
  }
  return 1;
}

static void test_json_numbers(void) {
  static const char *lits[] = {
      "1e-5", "1e-6", "9.999999747378752e-06", "10000.0", "500000.0", "0.02", "1e-12", "0.1",
      "1e300", "-0", "0", "123456789012345678901234567890", "1000000.0", "1e6", "0.5", "1e-05",
      "1E-5", "1e+5", "3.141592653589793", "2.718281828459045", "0.30000000000000004",
      "1.0000000116860974e-07", "2.9999999242136255e-05", "0.10000000149011612", "1e22", "1e23",
      "9007199254740993", "9007199254740992", "18446744073709551615", "18446744073709551616",
      "2.2250738585072014e-308", "2.2250738585072011e-308", "4.9e-324", "5e-324",
      "2.4703282292062328e-324", "2.4703282292062327e-324", "1e-320", "1.7976931348623157e308",
      "1.7976931348623158e308", "1.7976931348623159e308", "-1.5e-10", "123.456e-7", "1e-400",
      "0e999999", "0.000000000000000000000000000001", "1e400", "6.02214076e23", "1.602e-19",
      "8.98846567431158e307", "5.5e-310", "0.1e1", "100e-2", "7.2057594037927933e16",
      "1844674407370955161.5", "4503599627370497.5", "2.2250738585072012e-308",
  };
  for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++)
    CHECK(number_matches(lits[i], 1), "number %s", lits[i]);

  /* random doubles printed with 15..17 digits, and random decimal literals of up to 19
   * significant digits with exponents across the whole range: all must match strtod */
  char buf[128];
  int bad = 0;
  for (int i = 0; i < 100000; i++) {
    double x;
    uint64_t u = rnd();
    memcpy(&x, &u, 8);
    if (isnan(x) || isinf(x)) continue;
    snprintf(buf, sizeof buf, "%.*g", 15 + (int)(i % 3), x);
    bad += !number_matches(buf, bad < 5);
  }
  for (int i = 0; i < 100000; i++) {
    int nd = 1 + (int)rnd_below(19), dot = (int)rnd_below((uint64_t)nd + 1), k = 0;
    if (rnd() & 1) buf[k++] = '-';
    for (int j = 0; j < nd; j++) {
      if (j == dot && j > 0) buf[k++] = '.';
      buf[k++] = (char)('0' + (j == 0 ? 1 + rnd_below(9) : rnd_below(10)));
    }
    snprintf(buf + k, sizeof buf - (size_t)k, "e%d", (int)rnd_below(700) - 360);
    bad += !number_matches(buf, bad < 5);
  }
  CHECK(bad == 0, "%d random literals differ from strtod", bad);

  /* more than 19 significant digits: we keep 19 plus a sticky bit, so a literal within
   * ~1e-19 of a rounding boundary may differ; count only (informational) */
  int differ = 0;
  for (int i = 0; i < 20000; i++) {
    int nd = 20 + (int)rnd_below(20), k = 0;
    for (int j = 0; j < nd; j++) buf[k++] = (char)('0' + (j == 0 ? 1 + rnd_below(9) : rnd_below(10)));
    snprintf(buf + k, sizeof buf - (size_t)k, "e%d", (int)rnd_below(600) - 330);
    differ += !number_matches(buf, 0);
  }
  printf("info: %d of 20000 literals with 20-39 significant digits differ from strtod\n", differ);
}

/* ---- safetensors ------------------------------------------------------------------------ */

static uint8_t *st_build(const char *header, const uint8_t *data, size_t data_len, size_t *out_len) {
  size_t n = strlen(header);
  uint8_t *b = (uint8_t *)malloc(8 + n + data_len);
  if (!b) exit(2);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(b + 8, header, n);
  if (data_len) memcpy(b + 8 + n, data, data_len);
  *out_len = 8 + n + data_len;
  return b;
}

static int32_t st_try(const char *header, size_t data_len) {
  uint8_t data[256] = {0};
  size_t len;
  uint8_t *b = st_build(header, data, data_len, &len);
  lrt_st_file f;
  int32_t st = lrt_st_parse(b, len, "t.safetensors", &f);
  if (st == LRT_OK) lrt_st_close(&f);
  free(b);
  return st;
}

static const char *k_st_header =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"a.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"e\":{\"dtype\":\"I64\",\"shape\":[0, 5],\"data_offsets\":[32,32]},"
    "\"s\":{\"data_offsets\":[32,33],\"shape\":[],\"dtype\":\"U8\"},"
    "\"f4\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[33,34]}}    ";
#define ST_DATA_LEN 34

static void test_safetensors(void) {
  uint8_t data[ST_DATA_LEN];
  for (int i = 0; i < ST_DATA_LEN; i++) data[i] = (uint8_t)i;
  size_t len;
  uint8_t *b = st_build(k_st_header, data, ST_DATA_LEN, &len);
  lrt_st_file f;
  int32_t st = lrt_st_parse(b, len, "t.safetensors", &f);
  CHECK(st == LRT_OK, "valid safetensors: %s", lrt_last_error());
  if (st == LRT_OK) {
    CHECK(f.n_tensors == 5, "n_tensors %zu", f.n_tensors);
    CHECK(!strcmp(f.tensors[0].name, "a.weight") && !strcmp(f.tensors[1].name, "b") &&
              !strcmp(f.tensors[4].name, "s"), "sorted by name");
    const lrt_tensor_ref *t = lrt_st_find(&f, "b");
    CHECK(t && t->dtype == LRT_DT_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
              t->n_elems == 6 && t->nbytes == 24 && t->data == b + len - ST_DATA_LEN, "tensor b");
    t = lrt_st_find(&f, "a.weight");
    CHECK(t && t->dtype == LRT_DT_BF16 && t->data[0] == 24 && t->nbytes == 8, "tensor a.weight");
    t = lrt_st_find(&f, "e");
    CHECK(t && t->dtype == LRT_DT_OTHER && !strcmp(t->dtype_name, "I64") && t->n_elems == 0, "e");
    t = lrt_st_find(&f, "s");
    CHECK(t && t->n_dims == 0 && t->n_elems == 1 && t->nbytes == 1 && t->data[0] == 32, "scalar");
    t = lrt_st_find(&f, "f4");
    CHECK(t && !strcmp(t->dtype_name, "F4") && t->nbytes == 1, "f4");
    CHECK(lrt_st_find(&f, "zzz") == NULL && lrt_st_find(&f, "") == NULL, "find misses");
    CHECK(f.map.data == b && f.map.priv[0] == NULL, "caller buffer");
    lrt_st_close(&f);
  }

  /* truncated at every length: the last tensor ends at the end of the file */
  int ok_trunc = 1;
  for (size_t l = 0; l < len; l++) {
    uint8_t *c = dup_bytes(b, l);
    st = lrt_st_parse(c, l, "t.safetensors", &f);
    if (st != LRT_ERR_FORMAT || f.tensors != NULL) ok_trunc = 0;
    if (st == LRT_OK) lrt_st_close(&f);
    free(c);
  }
  CHECK(ok_trunc, "every truncation fails with LRT_ERR_FORMAT");

  /* corrupted header length */
  uint64_t bad_lens[] = {len - 7, UINT64_C(1) << 63, UINT64_C(200) << 20, UINT64_MAX};
  for (size_t i = 0; i < sizeof bad_lens / sizeof bad_lens[0]; i++) {
    uint8_t *c = dup_bytes(b, len);
    for (int k = 0; k < 8; k++) c[k] = (uint8_t)(bad_lens[i] >> (8 * k));
    st = lrt_st_parse(c, len, "t.safetensors", &f);
    CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), "absurd header length"), "len %zu: %s",
          i, lrt_last_error());
    free(c);
  }
  free(b);

  /* file round trip through lrt_st_open */
  b = st_build(k_st_header, data, ST_DATA_LEN, &len);
  const char *path = "test_parsers_tmp.safetensors";
  FILE *fp = fopen(path, "wb");
  CHECK(fp && fwrite(b, 1, len, fp) == len, "write temp file");
  if (fp) fclose(fp);
  st = lrt_st_open(path, 0, &f);
  CHECK(st == LRT_OK && f.n_tensors == 5 && f.map.priv[0] != NULL, "open: %s", lrt_last_error());
  if (st == LRT_OK) {
    const lrt_tensor_ref *t = lrt_st_find(&f, "s");
    CHECK(t && t->data[0] == 32, "mapped data");
    lrt_st_close(&f);
  }
  st = lrt_st_open(path, 1, &f); /* read into memory: the same table and bytes */
  CHECK(st == LRT_OK && f.n_tensors == 5 && f.map.priv[1] == LRT_MAP_HEAP, "read in: %s", lrt_last_error());
  if (st == LRT_OK) {
    const lrt_tensor_ref *t = lrt_st_find(&f, "s");
    CHECK(t && t->data[0] == 32 && !memcmp(f.map.data, b, len), "read-in data");
    lrt_st_close(&f);
  }
  CHECK(lrt_st_open("/nonexistent/x.safetensors", 1, &f) == LRT_ERR_NOT_FOUND, "missing file, read in");

  { /* a large file read into memory: the same bytes; on Linux in 2 MiB-aligned memory advised
     * for huge pages (LRT_MAP_HUGE), released by lrt_unmap_file */
    const size_t big = (9u << 20) + 12345u;
    uint8_t *src = (uint8_t *)malloc(big);
    CHECK(src != NULL, "alloc");
    if (src) {
      for (size_t i = 0; i < big; i++) src[i] = (uint8_t)(i * 2654435761u >> 13);
      const char *bpath = "test_parsers_big.bin";
      FILE *bf = fopen(bpath, "wb");
      CHECK(bf && fwrite(src, 1, big, bf) == big, "write big temp file");
      if (bf) fclose(bf);
      lrt_mapped_file mf;
      st = lrt_read_whole_file(bpath, &mf);
      CHECK(st == LRT_OK && mf.size == big && !memcmp(mf.data, src, big), "big read-in data: %s", lrt_last_error());
#if defined(__linux__)
      CHECK(mf.priv[1] == LRT_MAP_HUGE && ((uintptr_t)mf.data & ((2u << 20) - 1)) == 0, "big read-in: huge-page memory");
#endif
      lrt_map_release(&mf, mf.data, mf.size); /* a no-op for read-in memory: the bytes stay */
      CHECK(!memcmp(mf.data, src, big), "big read-in data kept after a release hint");
      lrt_unmap_file(&mf);
      CHECK(mf.data == NULL && mf.priv[1] == NULL, "big read-in released");
      remove(bpath);
      free(src);
    }
  }
  remove(path);
  free(b);
  CHECK(lrt_st_open("/nonexistent/x.safetensors", 0, &f) == LRT_ERR_NOT_FOUND, "missing file");
  CHECK(f.tensors == NULL && f.map.data == NULL, "zeroed on failure");

  /* semantic errors */
  struct { const char *h; size_t dl; const char *msg; } bad[] = {
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, "need 24 bytes"},
      {"{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
      {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
      {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing field \"dtype\""},
      {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "missing field \"shape\""},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field \"data_offsets\""},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unexpected field"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "not an array"},
      {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8, "dimensions"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8, "overflows"},
      {"{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8, "overflows"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, "outside"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "outside"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets must be"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "data_offsets must be"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e1]}}", 8, "data_offsets must be"},
      {"[]", 0, "not a JSON object"},
      {"{\"a\":[1]}", 0, "not an object"},
      {"{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "empty name"},
      {"{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "NUL"},
      {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
      {"{\"__metadata__\":[]}", 0, "__metadata__"},
      {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole bytes"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate key"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 8, "line 1"},
      {"", 0, "line 1"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    st = st_try(bad[i].h, bad[i].dl);
    CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), "t.safetensors") &&
              strstr(lrt_last_error(), bad[i].msg),
          "safetensors case %zu: %d %s", i, st, lrt_last_error());
  }
  /* fine: empty header, zero-size tensors sharing an offset */
  CHECK(st_try("{}", 0) == LRT_OK, "{}: %s", lrt_last_error());
  CHECK(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]}}", 9) == LRT_OK,
        "zero-size tensors: %s", lrt_last_error());
  /* bytes that belong to no tensor: a hole, a gap before the first, bytes after the last, data
   * without tensors (an edited dtype / shape / offset, or appended data) */
  struct { const char *h; size_t dl; const char *msg; } holes[] = {
      {"{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[12,13]}}", 13, "bytes 8..12"},
      {"{\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5]}}", 5, "first 4 bytes"},
      {"{\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 9, "8 bytes after the last"},
      {"{}", 3, "3-byte data section"},
  };
  for (size_t i = 0; i < sizeof holes / sizeof holes[0]; i++) {
    st = st_try(holes[i].h, holes[i].dl);
    CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), "belong") && strstr(lrt_last_error(), holes[i].msg),
          "safetensors hole %zu: %d %s", i, st, lrt_last_error());
  }
}

/* ---- GGUF ------------------------------------------------------------------------------- */

typedef struct bytes {
  uint8_t *p;
  size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = (uint8_t *)realloc(b->p, b->cap);
    if (!b->p) exit(2);
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}
static void put_u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(bytes *b, uint32_t v) {
  uint8_t t[4];
  for (int i = 0; i < 4; i++) t[i] = (uint8_t)(v >> (8 * i));
  put(b, t, 4);
}
static void put_u64(bytes *b, uint64_t v) {
  uint8_t t[8];
  for (int i = 0; i < 8; i++) t[i] = (uint8_t)(v >> (8 * i));
  put(b, t, 8);
}
static void put_str(bytes *b, const char *s) {
  put_u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void put_key(bytes *b, const char *key, uint32_t type) {
  put_str(b, key);
  put_u32(b, type);
}

typedef struct gg_tensor {
  const char *name;
  uint32_t n_dims;
  uint64_t ne[4];
  uint32_t type;
  uint64_t nbytes;
} gg_tensor;

/* Options that let the tests break one thing at a time. */
typedef struct gg_opts {
  uint32_t version;
  uint32_t alignment; /* 0: no general.alignment kv */
  int extra_kv;       /* 1: nested array, 2: dup key, 3: bad utf-8 string, 4: alignment as u64 */
  int tensor_bug;     /* 1: offset out of range, 2: misaligned offset, 3: overlap, 4: dup name,
                         5: bytes after the padded last tensor, 6: a hole before the last tensor */
} gg_opts;

static const gg_tensor k_gg_tensors[] = {
    {"tok_embd", 2, {4, 3}, 0, 48},    {"blk.0.q8", 2, {64, 2}, 8, 136},
    {"blk.0.q4", 1, {32}, 2, 18},      {"blk.0.q41", 2, {32, 1}, 3, 20},
    {"blk.0.k", 1, {256}, 12, 144},    {"empty", 3, {0, 2, 2}, 1, 0},
    {"norm", 1, {2}, 30, 4}, /* last: the file ends with its data */
};
#define GG_NT (sizeof k_gg_tensors / sizeof k_gg_tensors[0])

static uint8_t *gg_build(const gg_opts *o, size_t *out_len) {
  bytes b = {0};
  /* layout alignment; an invalid general.alignment is written but not used for layout */
  uint64_t al = o->alignment, align = al && al <= 4096 && !(al & (al - 1)) ? al : 32;
  put(&b, "GGUF", 4);
  put_u32(&b, o->version);
  put_u64(&b, GG_NT);
  put_u64(&b, 9 + (o->alignment ? 1 : 0) + (o->extra_kv ? 1 : 0));
  put_key(&b, "general.architecture", 8);
  put_str(&b, "llama");
  put_key(&b, "llama.context_length", 4);
  put_u32(&b, 2048);
  put_key(&b, "llama.rms_eps", 6);
  float eps = 1e-5f;
  uint32_t eb;
  memcpy(&eb, &eps, 4);
  put_u32(&b, eb);
  put_key(&b, "x.i64", 11);
  put_u64(&b, (uint64_t)-5);
  put_key(&b, "x.u64big", 10);
  put_u64(&b, UINT64_C(1) << 63);
  put_key(&b, "x.bool", 7);
  put_u8(&b, 1);
  put_key(&b, "x.f64", 12);
  double pi = 3.25;
  uint64_t pb;
  memcpy(&pb, &pi, 8);
  put_u64(&b, pb);
  put_key(&b, "tokenizer.ggml.tokens", 9);
  put_u32(&b, 8);
  put_u64(&b, 3);
  put_str(&b, "a");
  put_str(&b, "");
  put_str(&b, "h\xC3\xA9llo");
  put_key(&b, "x.i32s", 9);
  put_u32(&b, 5);
  put_u64(&b, 3);
  put_u32(&b, 1);
  put_u32(&b, (uint32_t)-2);
  put_u32(&b, 3);
  if (o->alignment) {
    put_key(&b, "general.alignment", o->extra_kv == 4 ? 10 : 4);
    if (o->extra_kv == 4) put_u64(&b, o->alignment);
    else put_u32(&b, o->alignment);
  }
  if (o->extra_kv == 1) { /* array of arrays */
    put_key(&b, "x.nested", 9);
    put_u32(&b, 9);
    put_u64(&b, 1);
  } else if (o->extra_kv == 2) {
    put_key(&b, "x.bool", 7);
    put_u8(&b, 0);
  } else if (o->extra_kv == 3) {
    put_key(&b, "x.bad", 8);
    put_str(&b, "\xC0\xAF");
  }
  uint64_t off = 0, offs[GG_NT];
  for (size_t i = 0; i < GG_NT; i++) {
    const gg_tensor *t = &k_gg_tensors[i];
    put_str(&b, o->tensor_bug == 4 && i == 1 ? "tok_embd" : t->name);
    put_u32(&b, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&b, t->ne[d]);
    put_u32(&b, t->type);
    if (o->tensor_bug == 6 && i == GG_NT - 1) off += align;
    offs[i] = off;
    uint64_t wr = off;
    if (o->tensor_bug == 1 && i == GG_NT - 2) wr = UINT64_C(1) << 40;
    if (o->tensor_bug == 2 && i == 1) wr += 1;
    if (o->tensor_bug == 3 && i == 1) wr = 0;
    put_u64(&b, wr);
    off = (off + t->nbytes + align - 1) / align * align;
  }
  while (b.n % align) put_u8(&b, 0);
  size_t data_start = b.n;
  /* data: tensor i filled with byte i+1; the file ends right after the last byte */
  uint64_t end = 0;
  for (size_t i = 0; i < GG_NT; i++)
    if (offs[i] + k_gg_tensors[i].nbytes > end) end = offs[i] + k_gg_tensors[i].nbytes;
  static const uint8_t zeros[256];
  for (uint64_t i = 0; i < end; i += 256) put(&b, zeros, end - i < 256 ? (size_t)(end - i) : 256);
  for (size_t i = 0; i < GG_NT; i++)
    memset(b.p + data_start + offs[i], (int)(i + 1), (size_t)k_gg_tensors[i].nbytes);
  if (o->tensor_bug == 5) /* the last tensor padded, then one more aligned block */
    for (uint64_t i = 0; i < (align - end % align) % align + align; i++) put_u8(&b, 0);
  *out_len = b.n;
  return b.p;
}

static int32_t gg_try(const gg_opts *o) {
  size_t len;
  uint8_t *b = gg_build(o, &len);
  lrt_gguf_file f;
  int32_t st = lrt_gguf_parse(b, len, "t.gguf", &f);
  if (st == LRT_OK) lrt_gguf_close(&f);
  free(b);
  return st;
}

static void test_gguf(void) {
  gg_opts o = {3, 64, 0, 0};
  size_t len;
  uint8_t *b = gg_build(&o, &len);
  lrt_gguf_file f;
  int32_t st = lrt_gguf_parse(b, len, "t.gguf", &f);
  CHECK(st == LRT_OK, "valid gguf: %s", lrt_last_error());
  if (st == LRT_OK) {
    CHECK(f.version == 3 && f.alignment == 64 && f.n_kv == 10 && f.n_tensors == GG_NT, "header");
    const lrt_gguf_kv *kv = lrt_gguf_find(&f, "general.architecture");
    CHECK(kv && kv->type == LRT_META_STRING && kv->count == 1 && kv->str_lens[0] == 5 &&
              !memcmp(kv->strs[0], "llama", 5), "arch");
    int64_t iv = 0;
    double dv = 0;
    kv = lrt_gguf_find(&f, "llama.context_length");
    CHECK(kv && lrt_gguf_kv_int(kv, 0, &iv) == LRT_OK && iv == 2048, "ctx");
    CHECK(lrt_gguf_kv_float(kv, 0, &dv) == LRT_OK && dv == 2048.0, "ctx as float");
    CHECK(lrt_gguf_kv_int(kv, 1, &iv) == LRT_ERR_INVALID_ARGUMENT, "index out of range");
    kv = lrt_gguf_find(&f, "llama.rms_eps");
    CHECK(kv && lrt_gguf_kv_float(kv, 0, &dv) == LRT_OK && dv == (double)1e-5f, "eps");
    CHECK(lrt_gguf_kv_int(kv, 0, &iv) == LRT_ERR_FORMAT, "float is not an int");
    kv = lrt_gguf_find(&f, "x.i64");
    CHECK(kv && lrt_gguf_kv_int(kv, 0, &iv) == LRT_OK && iv == -5, "i64");
    kv = lrt_gguf_find(&f, "x.u64big");
    CHECK(kv && lrt_gguf_kv_int(kv, 0, &iv) == LRT_ERR_FORMAT, "u64 > INT64_MAX");
    CHECK(lrt_gguf_kv_float(kv, 0, &dv) == LRT_OK && dv == 9223372036854775808.0, "u64 as float");
    kv = lrt_gguf_find(&f, "x.bool");
    CHECK(kv && lrt_gguf_kv_int(kv, 0, &iv) == LRT_OK && iv == 1, "bool");
    kv = lrt_gguf_find(&f, "x.f64");
    CHECK(kv && lrt_gguf_kv_float(kv, 0, &dv) == LRT_OK && dv == 3.25, "f64");
    kv = lrt_gguf_find(&f, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == LRT_META_ARRAY && kv->elem_type == LRT_META_STRING && kv->count == 3 &&
              kv->str_lens[1] == 0 && kv->str_lens[2] == 6 && !memcmp(kv->strs[2], "h\xC3\xA9llo", 6),
          "tokens");
    CHECK(lrt_gguf_kv_int(kv, 0, &iv) == LRT_ERR_FORMAT, "string is not an int");
    kv = lrt_gguf_find(&f, "x.i32s");
    CHECK(kv && kv->count == 3 && lrt_gguf_kv_int(kv, 1, &iv) == LRT_OK && iv == -2, "i32 array");
    CHECK(lrt_gguf_find(&f, "nope") == NULL, "find miss");

    const lrt_tensor_ref *t = lrt_gguf_find_tensor(&f, "tok_embd");
    CHECK(t && t == &f.tensors[0] && t->dtype == LRT_DT_F32 && t->n_dims == 2 && t->shape[0] == 3 &&
              t->shape[1] == 4 && t->n_elems == 12 && t->nbytes == 48 && t->data[0] == 1 &&
              t->data[47] == 1 && (size_t)(t->data - b) % 64 == 0, "tok_embd");
    t = lrt_gguf_find_tensor(&f, "blk.0.q8");
    CHECK(t && t->dtype == LRT_DT_Q8_0 && t->nbytes == 136 && t->shape[0] == 2 && t->shape[1] == 64 &&
              t->data[0] == 2 && t->data[135] == 2, "q8");
    t = lrt_gguf_find_tensor(&f, "blk.0.q4");
    CHECK(t && t->dtype == LRT_DT_Q4_0 && t->nbytes == 18 && !strcmp(t->dtype_name, "Q4_0"), "q4");
    t = lrt_gguf_find_tensor(&f, "blk.0.q41");
    CHECK(t && t->dtype == LRT_DT_Q4_1 && t->nbytes == 20, "q41");
    t = lrt_gguf_find_tensor(&f, "blk.0.k");
    CHECK(t && t->dtype == LRT_DT_Q4_K && !strcmp(t->dtype_name, "Q4_K") && t->nbytes == 144, "q4k");
    t = lrt_gguf_find_tensor(&f, "norm");
    CHECK(t && t->dtype == LRT_DT_BF16 && t->nbytes == 4 && t->data + 4 == b + len, "norm at the end");
    t = lrt_gguf_find_tensor(&f, "empty");
    CHECK(t && t->n_elems == 0 && t->shape[0] == 2 && t->shape[2] == 0, "empty");
    CHECK(lrt_gguf_find_tensor(&f, "missing") == NULL, "tensor miss");
    lrt_gguf_close(&f);
  }

  /* truncated at every length */
  int ok_trunc = 1;
  for (size_t l = 0; l < len; l++) {
    uint8_t *c = dup_bytes(b, l);
    st = lrt_gguf_parse(c, l, "t.gguf", &f);
    if (st != LRT_ERR_FORMAT || f.kv != NULL || f.tensors != NULL) ok_trunc = 0;
    if (st == LRT_OK) lrt_gguf_close(&f);
    free(c);
  }
  CHECK(ok_trunc, "every GGUF truncation fails with LRT_ERR_FORMAT");

  /* huge counts and lengths must fail fast (no allocation of the claimed size) */
  struct { size_t at; uint64_t v; const char *msg; } huge[] = {
      {8, UINT64_C(1) << 60, "tensors"},            /* tensor_count */
      {16, UINT64_C(1) << 60, "metadata entries"},  /* kv_count */
      {16, UINT64_MAX, "metadata entries"},
      {24, UINT64_C(1) << 40, "truncated"},         /* first key length */
  };
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    uint8_t *c = dup_bytes(b, len);
    for (int k = 0; k < 8; k++) c[huge[i].at + (size_t)k] = (uint8_t)(huge[i].v >> (8 * k));
    st = lrt_gguf_parse(c, len, "t.gguf", &f);
    CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), huge[i].msg), "huge %zu: %s", i,
          lrt_last_error());
    free(c);
  }
  free(b);
  {
    bytes h = {0}; /* a string array claiming 2^61 elements, and one of u8 */
    for (int kind = 0; kind < 2; kind++) {
      h.n = 0;
      put(&h, "GGUF", 4);
      put_u32(&h, 3);
      put_u64(&h, 0);
      put_u64(&h, 1);
      put_key(&h, "big", 9);
      put_u32(&h, kind ? 0 : 8);
      put_u64(&h, UINT64_C(1) << 61);
      put_u64(&h, 0);
      st = lrt_gguf_parse(h.p, h.n, "t.gguf", &f);
      CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), "more than the file"), "big array %d: %s",
            kind, lrt_last_error());
    }
    h.n = 0; /* a file without tensors may end without data padding */
    put(&h, "GGUF", 4);
    put_u32(&h, 2);
    put_u64(&h, 0);
    put_u64(&h, 1);
    put_key(&h, "k", 7);
    put_u8(&h, 1);
    st = lrt_gguf_parse(h.p, h.n, "t.gguf", &f);
    CHECK(st == LRT_OK && f.n_kv == 1 && f.n_tensors == 0, "no tensors: %s", lrt_last_error());
    if (st == LRT_OK) lrt_gguf_close(&f);
    free(h.p);
  }

  /* one broken thing at a time */
  struct { gg_opts o; const char *msg; } bad[] = {
      {{1, 0, 0, 0}, "version 1"},          {{4, 0, 0, 0}, "unsupported GGUF version 4"},
      {{0x03000000, 0, 0, 0}, "big-endian"}, {{3, 48, 0, 0}, "power of two"},
      {{3, 0x80000001u, 0, 0}, "power of two"}, {{3, 64, 4, 0}, "must be a u32"},
      {{3, 0, 1, 0}, "array of arrays"},    {{3, 0, 2, 0}, "duplicate metadata key x.bool"},
      {{3, 0, 3, 0}, "not valid UTF-8"},    {{3, 0, 0, 1}, "lies outside"},
      {{3, 0, 0, 2}, "not a multiple of the alignment"}, {{3, 0, 0, 3}, "overlap"},
      {{3, 0, 0, 4}, "duplicate tensor name"},
      {{3, 0, 0, 5}, "at the end of the data section (after tensor \"norm\""},
      {{3, 64, 0, 6}, "and \"norm\") belong to no tensor"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    st = gg_try(&bad[i].o);
    CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), "t.gguf") &&
              strstr(lrt_last_error(), bad[i].msg), "gguf case %zu: %d %s", i, st, lrt_last_error());
  }
  CHECK(gg_try(&(gg_opts){2, 0, 0, 0}) == LRT_OK, "version 2: %s", lrt_last_error());
  CHECK(gg_try(&(gg_opts){3, 0, 0, 0}) == LRT_OK, "default alignment: %s", lrt_last_error());
  CHECK(gg_try(&(gg_opts){3, 1, 0, 0}) == LRT_OK, "alignment 1: %s", lrt_last_error());

  /* patch a tensor info in place: bad ggml type, bad n_dims, ragged Q8_0 row */
  b = gg_build(&o, &len);
  size_t name_at = 0;
  for (size_t i = 0; i + 8 < len; i++)
    if (!memcmp(b + i, "blk.0.q8", 8)) {
      name_at = i;
      break;
    }
  CHECK(name_at > 0, "found tensor info");
  size_t ndims_at = name_at + 8, ne0_at = ndims_at + 4, type_at = ne0_at + 16;
  struct { size_t at; uint32_t v32; uint64_t v64; int is64; const char *msg; } patch[] = {
      {type_at, 4, 0, 0, "unknown ggml type 4"},  {type_at, 1000, 0, 0, "unknown ggml type"},
      {ndims_at, 0, 0, 0, "dimensions"},         {ndims_at, 5, 0, 0, "dimensions"},
      {ne0_at, 0, 48, 1, "multiple of the Q8_0 block size"},
      {ne0_at, 0, UINT64_C(1) << 63, 1, "overflows"},
  };
  for (size_t i = 0; i < sizeof patch / sizeof patch[0]; i++) {
    uint8_t *c = dup_bytes(b, len);
    for (int k = 0; k < (patch[i].is64 ? 8 : 4); k++)
      c[patch[i].at + (size_t)k] = (uint8_t)((patch[i].is64 ? patch[i].v64 : patch[i].v32) >> (8 * k));
    st = lrt_gguf_parse(c, len, "t.gguf", &f);
    CHECK(st == LRT_ERR_FORMAT && strstr(lrt_last_error(), patch[i].msg), "patch %zu: %s", i,
          lrt_last_error());
    free(c);
  }
  free(b);
  b = dup_bytes("GGUX\3\0\0\0", 8);
  CHECK(lrt_gguf_parse(b, 8, "t.gguf", &f) == LRT_ERR_FORMAT && strstr(lrt_last_error(), "not a GGUF"),
        "magic");
  free(b);
}

/* ---- random mutations ------------------------------------------------------------------- */

static uint64_t g_sink; /* keeps the walks below from being optimized away */

static void walk_json(const lj_value *v) {
  g_sink += (uint64_t)v->type;
  if (v->type == LJ_STRING)
    for (size_t i = 0; i <= v->str_len; i++) g_sink += (unsigned char)v->str[i];
  for (size_t i = 0; v->type == LJ_ARRAY && i < v->count; i++) walk_json(&v->items[i]);
  for (size_t i = 0; v->type == LJ_OBJECT && i < v->count; i++) {
    for (size_t k = 0; k <= v->members[i].key_len; k++) g_sink += (unsigned char)v->members[i].key[k];
    walk_json(&v->members[i].value);
  }
}

static void touch_tensors(const lrt_tensor_ref *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    g_sink += strlen(t[i].name) + t[i].name_len;
    for (uint64_t k = 0; k < t[i].nbytes; k++) g_sink += t[i].data[k];
  }
}

static uint8_t *mutate(const uint8_t *src, size_t len, size_t *out_len) {
  size_t cap = len + 16, n = len;
  uint8_t *b = (uint8_t *)malloc(cap);
  if (!b) exit(2);
  memcpy(b, src, len);
  int ops = 1 + (int)rnd_below(3);
  for (int op = 0; op < ops; op++) {
    switch (rnd_below(5)) {
      case 0: /* flip bits */
        if (n) b[rnd_below(n)] ^= (uint8_t)(1u << rnd_below(8));
        break;
      case 1: /* random byte, often a boundary value */
        if (n) {
          static const uint8_t vals[] = {0x00, 0xFF, 0x7F, 0x80, '"', '\\', '{', '[', ',', '0', 0x20};
          b[rnd_below(n)] = rnd() & 1 ? vals[rnd_below(sizeof vals)] : (uint8_t)rnd();
        }
        break;
      case 2: /* truncate */
        n = (size_t)rnd_below(n + 1);
        break;
      case 3: { /* insert 1..8 bytes */
        size_t k = 1 + (size_t)rnd_below(8), at = (size_t)rnd_below(n + 1);
        if (n + k > cap) break;
        memmove(b + at + k, b + at, n - at);
        for (size_t i = 0; i < k; i++) b[at + i] = (uint8_t)rnd();
        n += k;
        break;
      }
      default: { /* delete 1..8 bytes */
        size_t at = (size_t)rnd_below(n + 1), k = 1 + (size_t)rnd_below(8);
        if (at + k > n) k = n - at;
        memmove(b + at, b + at + k, n - at - k);
        n -= k;
      }
    }
  }
  uint8_t *exact = dup_bytes(b, n); /* exact size so ASan catches overreads */
  free(b);
  *out_len = n;
  return exact;
}

static void test_mutations(void) {
  const int rounds = 20000;
  const char *jt = "{\"a\": [1, -2.5e-3, 1e300, {\"b\": null, \"c\": true}], \"s\": "
                   "\"x\\u00e9\\ud83d\\ude00\\n\xC3\xA9\", \"n\": 123456789012345678901, "
                   "\"o\": {\"k\": [[], {}], \"f\": false}, \"e\": 9.999999747378752e-06}";
  size_t n, ok = 0;
  for (int i = 0; i < rounds; i++) {
    uint8_t *m = mutate((const uint8_t *)jt, strlen(jt), &n);
    lj_doc *d = NULL;
    int32_t st = lj_parse((const char *)m, n, "m.json", &d);
    if (st == LRT_OK) {
      walk_json(lj_root(d));
      lj_free(d);
      ok++;
    } else {
      CHECK(st == LRT_ERR_FORMAT && d == NULL, "json mutation status %d", st);
    }
    free(m);
  }
  printf("info: json mutations: %zu of %d parsed\n", ok, rounds);

  uint8_t data[ST_DATA_LEN] = {0};
  size_t len;
  uint8_t *stb = st_build(k_st_header, data, ST_DATA_LEN, &len);
  ok = 0;
  for (int i = 0; i < rounds; i++) {
    uint8_t *m = mutate(stb, len, &n);
    /* half the time keep the header length consistent so the JSON gets exercised */
    if ((i & 1) && n >= 8 + ST_DATA_LEN) {
      uint64_t h = (uint64_t)(n - 8 - ST_DATA_LEN);
      for (int k = 0; k < 8; k++) m[k] = (uint8_t)(h >> (8 * k));
    }
    lrt_st_file f;
    int32_t st = lrt_st_parse(m, n, "m.safetensors", &f);
    if (st == LRT_OK) {
      touch_tensors(f.tensors, f.n_tensors);
      lrt_st_close(&f);
      ok++;
    } else {
      CHECK(st == LRT_ERR_FORMAT && f.tensors == NULL, "safetensors mutation status %d", st);
    }
    free(m);
  }
  free(stb);
  printf("info: safetensors mutations: %zu of %d parsed\n", ok, rounds);

  gg_opts o = {3, 64, 0, 0};
  uint8_t *gb = gg_build(&o, &len);
  ok = 0;
  for (int i = 0; i < rounds; i++) {
    uint8_t *m = mutate(gb, len, &n);
    lrt_gguf_file f;
    int32_t st = lrt_gguf_parse(m, n, "m.gguf", &f);
    if (st == LRT_OK) {
      touch_tensors(f.tensors, f.n_tensors);
      for (size_t k = 0; k < f.n_kv; k++) {
        const lrt_gguf_kv *kv = &f.kv[k];
        g_sink += strlen(kv->key);
        for (uint64_t e = 0; e < kv->count && e < 64; e++) {
          int64_t iv;
          double dv;
          if (lrt_gguf_kv_int(kv, e, &iv) == LRT_OK) g_sink += (uint64_t)iv;
          if (lrt_gguf_kv_float(kv, e, &dv) == LRT_OK) g_sink += (uint64_t)(dv != dv);
          if (kv->strs)
            for (uint64_t c = 0; c < kv->str_lens[e]; c++) g_sink += (unsigned char)kv->strs[e][c];
        }
      }
      lrt_gguf_close(&f);
      ok++;
    } else {
      CHECK(st == LRT_ERR_FORMAT && f.kv == NULL && f.tensors == NULL, "gguf mutation status %d", st);
    }
    free(m);
  }
  free(gb);
  printf("info: gguf mutations: %zu of %d parsed\n", ok, rounds);
}

static void run(const char *name, void (*fn)(void)) {
  clock_t t0 = clock();
  int before = g_failures;
  fn();
  printf("%-20s %s (%.2f s cpu)\n", name, g_failures == before ? "ok" : "FAILED",
         (double)(clock() - t0) / CLOCKS_PER_SEC);
}

int main(void) {
  run("utf8", test_utf8);
  run("json valid", test_json_valid);
  run("json invalid", test_json_invalid);
  run("json numbers", test_json_numbers);
  run("safetensors", test_safetensors);
  run("gguf", test_gguf);
  run("mutations", test_mutations);
  printf("%s: %d checks, %d failures (sink %llu)\n", g_failures ? "FAILED" : "OK", g_checks,
         g_failures, (unsigned long long)(g_sink & 1));
  return g_failures ? 1 : 0;
}
