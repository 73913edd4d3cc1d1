/* The few <string.h> functions the kernels use, for the freestanding wasm32 build. */
#ifndef QG_WASM_STRING_H
#define QG_WASM_STRING_H
#include <stddef.h>
void* memset(void* dst, int c, size_t n);
void* memcpy(void* __restrict dst, const void* __restrict src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
#endif
