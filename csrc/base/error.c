/* error.c -- thread-local error messages and status names. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base.h"

#define LRT_ERR_CAP 1024
static LRT_THREAD_LOCAL char g_msg[LRT_ERR_CAP];

int32_t lrt_err(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return status;
}

int32_t lrt_err_prefix(int32_t status, const char *prefix) {
  char tmp[LRT_ERR_CAP];
  snprintf(tmp, sizeof tmp, "%.200s: %.800s", prefix, g_msg);
  memcpy(g_msg, tmp, sizeof g_msg);
  return status;
}

void lrt_err_clear(void) { g_msg[0] = 0; }

const char *lrt_last_error(void) { return g_msg; }

const char *lrt_status_name(int32_t status) {
  switch (status) {
    case LRT_OK: return "LRT_OK";
    case LRT_ERR_INVALID_ARGUMENT: return "LRT_ERR_INVALID_ARGUMENT";
    case LRT_ERR_NOT_FOUND: return "LRT_ERR_NOT_FOUND";
    case LRT_ERR_IO: return "LRT_ERR_IO";
    case LRT_ERR_FORMAT: return "LRT_ERR_FORMAT";
    case LRT_ERR_UNSUPPORTED: return "LRT_ERR_UNSUPPORTED";
    case LRT_ERR_OUT_OF_MEMORY: return "LRT_ERR_OUT_OF_MEMORY";
    case LRT_ERR_CONTEXT_FULL: return "LRT_ERR_CONTEXT_FULL";
    case LRT_ERR_STATE: return "LRT_ERR_STATE";
    case LRT_ERR_INTERNAL: return "LRT_ERR_INTERNAL";
    case LRT_ERR_BUFFER_TOO_SMALL: return "LRT_ERR_BUFFER_TOO_SMALL";
    case LRT_ERR_BUSY: return "LRT_ERR_BUSY";
    case LRT_ERR_NUMERIC: return "LRT_ERR_NUMERIC";
    default: return "LRT_ERR_UNKNOWN";
  }
}
