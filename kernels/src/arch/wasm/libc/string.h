/* The few <string.h> functions the kernels use, for the freestanding wasm32 build. */
#ifndef QG_WASM_STRING_H
#define QG_WASM_STRING_H
#include <stddef.h>
void* memset(void* dst, int c, size_t n);
void* memcpy(void* __restrict dst, const void* __restrict src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
/* -ffreestanding implies -fno-builtin, which would turn every small fixed-size memcpy (the kernels'
 * unaligned vector loads and stores) into a call to the byte loop of qg_libc.c: the builtins keep
 * them single loads and stores (and larger copies memory.copy / memory.fill). */
#ifndef QG_LIBC_IMPL
#define memcpy(d, s, n) __builtin_memcpy((d), (s), (n))
#define memset(d, c, n) __builtin_memset((d), (c), (n))
#endif
#endif
