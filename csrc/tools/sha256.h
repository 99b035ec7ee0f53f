/* sha256.h -- a small SHA-256 (FIPS 180-4) for the test tools: the matrix driver hashes
 * logits bits and token ids with it. Not part of the library. */
#ifndef LRT_TOOLS_SHA256_H
#define LRT_TOOLS_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct lrt_sha256 {
  uint32_t h[8];
  uint64_t total;     /* bytes hashed so far */
  uint8_t buf[64];    /* pending partial block */
  size_t used;
} lrt_sha256;

void lrt_sha256_init(lrt_sha256 *s);
void lrt_sha256_update(lrt_sha256 *s, const void *data, size_t len);
void lrt_sha256_final(lrt_sha256 *s, uint8_t out[32]);
/* 64 lowercase hex digits + NUL */
void lrt_sha256_hex(const uint8_t digest[32], char out[65]);

#endif
