/* fuzz_config.c -- the config.json loader (lrt_config_from_hf_json). The input is
 * config.json, optionally followed by a NUL byte and generation_config.json. */
#include "fuzz_common.h"
#include "../formats/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t len = nul ? (size_t)(nul - data) : size;
  uint8_t *cfg_text = fz_copy(data, len);
  uint8_t *gen_text = nul ? fz_copy(nul + 1, size - len - 1) : NULL;
  if (!cfg_text || (nul && !gen_text)) {
    free(cfg_text);
    free(gen_text);
    return 0;
  }
  for (int32_t flags = 0; flags <= LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS; flags++) {
    lrt_config cfg;
    char name[64];
    /* garbage in the outputs, so that a field the loader leaves unset is caught every time
     * (not only when the stack happens to hold a bad value) */
    memset(&cfg, 0xA5, sizeof cfg);
    memset(name, 'x', sizeof name);
    int32_t st = lrt_config_from_hf_json((const char *)cfg_text, len, (const char *)gen_text,
                                         nul ? size - len - 1 : 0, flags, &cfg, name, sizeof name);
    if (st == LRT_OK) {
      if (cfg.vocab <= 0 || cfg.dim <= 0 || cfg.n_layers <= 0 || cfg.n_heads <= 0 || cfg.n_eos < 0 ||
          cfg.n_eos > LRT_MAX_EOS || memchr(name, 0, sizeof name) == NULL)
        abort(); /* an accepted config is usable */
    } else if (lrt_last_error()[0] == '\0') {
      abort();
    }
  }
  free(cfg_text);
  free(gen_text);
  return 0;
}
