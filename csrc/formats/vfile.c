/* vfile.c -- the in-memory file set of a model opened from buffers (lrt_model_open_memory):
 * files looked up by their name in a model folder. */
#include <string.h>

#include "formats.h"

const lrt_vfile *lrt_vfile_find(const lrt_vfile *files, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(files[i].name, name) == 0) return &files[i];
  return NULL;
}
