/* lrt_atomic.h -- the few atomic operations loomrt needs, on every compiler it supports.
 *
 *   - C11 <stdatomic.h> where the compiler provides it (GCC, Clang, Apple Clang);
 *   - MSVC's Interlocked intrinsics on MSVC and clang-cl: MSVC ships <stdatomic.h> only
 *     behind /experimental:c11atomics (VS 2022 17.5+), and defines __STDC_NO_ATOMICS__
 *     otherwise, so an sdist must not depend on it;
 *   - the GCC/Clang __atomic builtins for a GNU-compatible compiler that defines
 *     __STDC_NO_ATOMICS__.
 *
 * Loads are acquire, stores release, compare-exchange and fetch-sub sequentially consistent
 * (the MSVC versions are full barriers, which is stronger and always correct). Pointers are
 * handled as void *. */
#ifndef LOOMRT_ATOMIC_H
#define LOOMRT_ATOMIC_H

#include <stddef.h>
#include <stdint.h>

#if defined(_MSC_VER)
#include <intrin.h>
typedef volatile long lrt_atomic_int;
typedef volatile __int64 lrt_atomic_u64;
typedef void *volatile lrt_atomic_ptr;
static __inline int lrt_atomic_load_int(lrt_atomic_int *p) { return (int)_InterlockedCompareExchange(p, 0, 0); }
static __inline void lrt_atomic_store_int(lrt_atomic_int *p, int v) { (void)_InterlockedExchange(p, (long)v); }
/* Returns 1 and stores `desired` when *p == *expected; else returns 0 and sets *expected. */
static __inline int lrt_atomic_cas_int(lrt_atomic_int *p, int *expected, int desired) {
  long old = _InterlockedCompareExchange(p, (long)desired, (long)*expected);
  if (old == (long)*expected) return 1;
  *expected = (int)old;
  return 0;
}
/* Subtracts 1 and returns the new value. */
static __inline int lrt_atomic_dec_int(lrt_atomic_int *p) { return (int)_InterlockedDecrement(p); }
/* Adds 1 and returns the old value. */
static __inline int lrt_atomic_inc_old_int(lrt_atomic_int *p) { return (int)_InterlockedIncrement(p) - 1; }
/* Adds v and returns the new value. */
static __inline int lrt_atomic_add_int(lrt_atomic_int *p, int v) { return (int)_InterlockedExchangeAdd(p, (long)v) + v; }
static __inline uint64_t lrt_atomic_load_u64(lrt_atomic_u64 *p) {
  return (uint64_t)_InterlockedCompareExchange64(p, 0, 0);
}
static __inline void lrt_atomic_store_u64(lrt_atomic_u64 *p, uint64_t v) {
  (void)_InterlockedExchange64(p, (__int64)v);
}
static __inline void *lrt_atomic_load_ptr(lrt_atomic_ptr *p) {
  return _InterlockedCompareExchangePointer((void *volatile *)p, NULL, NULL);
}
static __inline void lrt_atomic_store_ptr(lrt_atomic_ptr *p, void *v) {
  (void)_InterlockedExchangePointer((void *volatile *)p, v);
}

#elif !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
typedef atomic_int lrt_atomic_int;
typedef _Atomic(uint64_t) lrt_atomic_u64;
typedef _Atomic(void *) lrt_atomic_ptr;
static inline int lrt_atomic_load_int(lrt_atomic_int *p) { return atomic_load_explicit(p, memory_order_acquire); }
static inline void lrt_atomic_store_int(lrt_atomic_int *p, int v) { atomic_store_explicit(p, v, memory_order_release); }
static inline int lrt_atomic_cas_int(lrt_atomic_int *p, int *expected, int desired) {
  return atomic_compare_exchange_strong(p, expected, desired);
}
static inline int lrt_atomic_dec_int(lrt_atomic_int *p) { return atomic_fetch_sub(p, 1) - 1; }
static inline int lrt_atomic_inc_old_int(lrt_atomic_int *p) { return atomic_fetch_add(p, 1); }
static inline int lrt_atomic_add_int(lrt_atomic_int *p, int v) { return atomic_fetch_add(p, v) + v; }
static inline uint64_t lrt_atomic_load_u64(lrt_atomic_u64 *p) { return atomic_load_explicit(p, memory_order_acquire); }
static inline void lrt_atomic_store_u64(lrt_atomic_u64 *p, uint64_t v) {
  atomic_store_explicit(p, v, memory_order_release);
}
static inline void *lrt_atomic_load_ptr(lrt_atomic_ptr *p) { return atomic_load_explicit(p, memory_order_acquire); }
static inline void lrt_atomic_store_ptr(lrt_atomic_ptr *p, void *v) { atomic_store_explicit(p, v, memory_order_release); }

#elif defined(__GNUC__)
typedef int lrt_atomic_int;
typedef uint64_t lrt_atomic_u64;
typedef void *lrt_atomic_ptr;
static inline int lrt_atomic_load_int(lrt_atomic_int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void lrt_atomic_store_int(lrt_atomic_int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int lrt_atomic_cas_int(lrt_atomic_int *p, int *expected, int desired) {
  return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline int lrt_atomic_dec_int(lrt_atomic_int *p) { return __atomic_sub_fetch(p, 1, __ATOMIC_SEQ_CST); }
static inline int lrt_atomic_inc_old_int(lrt_atomic_int *p) { return __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST); }
static inline int lrt_atomic_add_int(lrt_atomic_int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t lrt_atomic_load_u64(lrt_atomic_u64 *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void lrt_atomic_store_u64(lrt_atomic_u64 *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void *lrt_atomic_load_ptr(lrt_atomic_ptr *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void lrt_atomic_store_ptr(lrt_atomic_ptr *p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

#else
#error "loomrt needs C11 atomics, MSVC's Interlocked intrinsics or GCC's __atomic builtins"
#endif

#endif
