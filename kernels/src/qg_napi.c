/* Node-API glue: checks every argument at the boundary (TypeError / RangeError naming it), then
 * calls the C API. Buffers are caller-owned typed arrays; nothing here keeps a reference. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE under -std=c11 */
#endif
#include <node_api.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qg_internal.h"

void qg_threads_install(void);

#define MAX_ARGS 16
typedef struct {
  void* p;       /* typed array data (NULL for an omitted optional array) */
  int64_t len;   /* elements */
  int64_t i;     /* integer arguments */
  double r;      /* real arguments */
} arg_t;

static napi_value throw_type(napi_env env, const char* fn, const char* name, const char* want) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: argument '%s' must be %s", fn, name, want);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

/* spec: one letter per argument, then ':' and comma-separated names.
 * F Float32Array, f Float32Array|null, U Uint8Array, u Uint8Array|null, H Uint16Array,
 * D Float64Array, N non-negative safe integer, I integer, R finite number, B boolean. */
static int parse_args(napi_env env, napi_callback_info info, const char* fn, const char* spec, const char* names, arg_t* out) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const size_t want = strlen(spec);
  char namebuf[256];
  snprintf(namebuf, sizeof namebuf, "%s", names);
  char* save = NULL;
  char* name = strtok_r(namebuf, ",", &save);
  for (size_t a = 0; a < want; a++, name = strtok_r(NULL, ",", &save)) {
    const char* nm = name ? name : "?";
    const char t = spec[a];
    napi_valuetype vt = napi_undefined;
    if (a < argc) napi_typeof(env, argv[a], &vt);
    out[a].p = NULL;
    out[a].len = 0;
    out[a].i = 0;
    out[a].r = 0;
    if (t == 'F' || t == 'f' || t == 'U' || t == 'u' || t == 'H' || t == 'D') {
      const int optional = t == 'f' || t == 'u';
      if (optional && (vt == napi_null || vt == napi_undefined)) continue;
      bool is_ta = false;
      if (a < argc) napi_is_typedarray(env, argv[a], &is_ta);
      const char* want_name = (t == 'F' || t == 'f') ? "a Float32Array" : t == 'H' ? "a Uint16Array" : t == 'D' ? "a Float64Array" : "a Uint8Array";
      if (!is_ta) { throw_type(env, fn, nm, want_name); return 0; }
      napi_typedarray_type tt;
      size_t len;
      void* data;
      napi_get_typedarray_info(env, argv[a], &tt, &len, &data, NULL, NULL);
      const napi_typedarray_type expect = (t == 'F' || t == 'f') ? napi_float32_array
                                          : t == 'H'               ? napi_uint16_array
                                          : t == 'D'               ? napi_float64_array
                                                                   : napi_uint8_array;
      if (tt != expect) { throw_type(env, fn, nm, want_name); return 0; }
      out[a].p = data;
      out[a].len = (int64_t)len;
    } else if (t == 'N' || t == 'I') {
      double d;
      if (vt != napi_number) { throw_type(env, fn, nm, "a number"); return 0; }
      napi_get_value_double(env, argv[a], &d);
      if (d != (double)(int64_t)d || d > 9007199254740991.0 || d < -9007199254740991.0 || (t == 'N' && d < 0)) {
        throw_type(env, fn, nm, t == 'N' ? "a non-negative integer" : "an integer");
        return 0;
      }
      out[a].i = (int64_t)d;
    } else if (t == 'R') {
      double d;
      if (vt != napi_number) { throw_type(env, fn, nm, "a number"); return 0; }
      napi_get_value_double(env, argv[a], &d);
      if (!(d - d == 0)) { throw_type(env, fn, nm, "a finite number"); return 0; }
      out[a].r = d;
    } else if (t == 'B') {
      bool b;
      if (vt != napi_boolean) { throw_type(env, fn, nm, "a boolean"); return 0; }
      napi_get_value_bool(env, argv[a], &b);
      out[a].i = b;
    }
  }
  return 1;
}

static int need_len(napi_env env, const char* fn, const char* name, const arg_t* a, int64_t n) {
  if (!a->p || a->len >= n) return 1;
  char msg[256];
  snprintf(msg, sizeof msg, "%s: '%s' has %lld elements, needs %lld", fn, name, (long long)a->len, (long long)n);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return 0;
}

static napi_value status_result(napi_env env, const char* fn, int rc) {
  if (rc != QG_OK) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: invalid arguments (code %d)", fn, rc);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return NULL;
  }
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static int threads_of(int64_t t) { return t < 1 ? 1 : t > 64 ? 64 : (int)t; }

#define ARGS(fn, spec, names)                                  \
  arg_t A[MAX_ARGS];                                           \
  if (!parse_args(env, info, fn, spec, names, A)) return NULL;

static napi_value js_quantize_int(napi_env env, napi_callback_info info) {
  ARGS("quantizeInt", "FNNIIBBUFUI", "wT,n,k,bits,blockSize,symmetric,clipSearch,codes,scales,zeroPoints,threads");
  const int64_t n = A[1].i, k = A[2].i, bs = A[4].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "quantizeInt", "wT", &A[0], n * k) || !need_len(env, "quantizeInt", "codes", &A[7], n * bpr * bs) ||
      !need_len(env, "quantizeInt", "scales", &A[8], n * bpr) || !need_len(env, "quantizeInt", "zeroPoints", &A[9], n * bpr))
    return NULL;
  return status_result(env, "quantizeInt",
                       qg_quantize_int(A[0].p, n, k, (int)A[3].i, (int)bs, (int)A[5].i, (int)A[6].i, A[7].p, A[8].p, A[9].p,
                                       threads_of(A[10].i)));
}

static napi_value js_pack_bits(napi_env env, napi_callback_info info) {
  ARGS("packBits", "UINU", "codes,bits,groupLength,out");
  const int64_t g = A[2].i;
  if (g < 1 || A[0].len % g) return status_result(env, "packBits", QG_EINVAL);
  if (!need_len(env, "packBits", "out", &A[3], (A[0].len / g) * ((g * A[1].i + 7) / 8))) return NULL;
  return status_result(env, "packBits", qg_pack_bits(A[0].p, A[0].len, (int)A[1].i, g, A[3].p));
}

static napi_value js_unpack_bits(napi_env env, napi_callback_info info) {
  ARGS("unpackBits", "UINNU", "packed,bits,groupLength,groups,out");
  const int64_t g = A[2].i, groups = A[3].i;
  if (!need_len(env, "unpackBits", "packed", &A[0], groups * ((g * A[1].i + 7) / 8)) ||
      !need_len(env, "unpackBits", "out", &A[4], groups * g))
    return NULL;
  return status_result(env, "unpackBits", qg_unpack_bits(A[0].p, (int)A[1].i, g, groups, A[4].p));
}

static int int_weight_lens(napi_env env, const char* fn, arg_t* packed, arg_t* scales, arg_t* zp, int64_t n, int64_t k,
                           int64_t bits, int64_t bs) {
  if (bs < 1 || bits < 1 || bits > 8) return 1; /* the C API rejects these */
  const int64_t bpr = (k + bs - 1) / bs;
  return need_len(env, fn, "packed", packed, n * bpr * ((bs * bits + 7) / 8)) && need_len(env, fn, "scales", scales, n * bpr) &&
         need_len(env, fn, "zeroPoints", zp, n * bpr);
}

static napi_value js_dequantize_int(napi_env env, napi_callback_info info) {
  ARGS("dequantizeInt", "UFuNNIIF", "packed,scales,zeroPoints,n,k,bits,blockSize,out");
  const int64_t n = A[3].i, k = A[4].i;
  if (!int_weight_lens(env, "dequantizeInt", &A[0], &A[1], &A[2], n, k, A[5].i, A[6].i) ||
      !need_len(env, "dequantizeInt", "out", &A[7], n * k))
    return NULL;
  return status_result(env, "dequantizeInt", qg_dequantize_int(A[0].p, A[1].p, A[2].p, n, k, (int)A[5].i, (int)A[6].i, A[7].p));
}

static napi_value js_gemm_int(napi_env env, napi_callback_info info) {
  ARGS("gemmInt", "UFuNNIIFNFI", "packed,scales,zeroPoints,n,k,bits,blockSize,x,m,y,threads");
  const int64_t n = A[3].i, k = A[4].i, m = A[8].i;
  if (!int_weight_lens(env, "gemmInt", &A[0], &A[1], &A[2], n, k, A[5].i, A[6].i) || !need_len(env, "gemmInt", "x", &A[7], m * k) ||
      !need_len(env, "gemmInt", "y", &A[9], m * n))
    return NULL;
  return status_result(env, "gemmInt",
                       qg_gemm_int(A[0].p, A[1].p, A[2].p, n, k, (int)A[5].i, (int)A[6].i, A[7].p, m, A[9].p, threads_of(A[10].i)));
}

/* The int8-activation kernels' workspace, kept per thread between calls: a fresh malloc of a few hundred
 * KiB per call is an mmap and page faults that cost as much as an M = 8 GEMM. */
#if defined(_MSC_VER)
#define QG_THREAD_LOCAL __declspec(thread)
#else
#define QG_THREAD_LOCAL _Thread_local
#endif
static QG_THREAD_LOCAL void* t_q8_ws;
static QG_THREAD_LOCAL size_t t_q8_ws_bytes;
static void* q8_workspace(int64_t bytes) {
  if ((size_t)bytes > t_q8_ws_bytes) {
    free(t_q8_ws);
    t_q8_ws = malloc((size_t)bytes);
    t_q8_ws_bytes = t_q8_ws ? (size_t)bytes : 0;
  }
  return t_q8_ws;
}

static napi_value js_gemv_int4_q8(napi_env env, napi_callback_info info) {
  ARGS("gemvInt4Q8", "UFuNNIFFI", "packed,scales,zeroPoints,n,k,blockSize,x,y,threads");
  const int64_t n = A[3].i, k = A[4].i, bs = A[5].i;
  if (!int_weight_lens(env, "gemvInt4Q8", &A[0], &A[1], &A[2], n, k, 4, bs) || !need_len(env, "gemvInt4Q8", "x", &A[6], k) ||
      !need_len(env, "gemvInt4Q8", "y", &A[7], n))
    return NULL;
  const int64_t bytes = qg_gemv_q8_workspace_bytes(k, (int)bs);
  if (bytes <= 0) return status_result(env, "gemvInt4Q8", QG_EINVAL);
  void* ws = q8_workspace(bytes); /* the glue owns the workspace; the kernel never allocates */
  if (!ws) return status_result(env, "gemvInt4Q8", QG_EINVAL);
  const int rc = qg_gemv_int4_q8(A[0].p, A[1].p, A[2].p, n, k, (int)bs, A[6].p, A[7].p, ws, threads_of(A[8].i));
  return status_result(env, "gemvInt4Q8", rc);
}

static napi_value js_prepack_int4_q8_bytes(napi_env env, napi_callback_info info) {
  ARGS("prepackInt4Q8Bytes", "NNI", "n,k,blockSize");
  napi_value r;
  napi_create_int64(env, qg_prepack_int4_q8_bytes(A[0].i, A[1].i, (int)A[2].i), &r);
  return r;
}

static napi_value js_prepack_int4_q8(napi_env env, napi_callback_info info) {
  ARGS("prepackInt4Q8", "UNNIU", "packed,n,k,blockSize,out");
  const int64_t n = A[1].i, k = A[2].i, bs = A[3].i, bytes = qg_prepack_int4_q8_bytes(n, k, (int)bs);
  if (bytes <= 0) return status_result(env, "prepackInt4Q8", QG_ENOKERNEL);
  if (!need_len(env, "prepackInt4Q8", "packed", &A[0], n * ((k + bs - 1) / bs) * (bs / 2)) || !need_len(env, "prepackInt4Q8", "out", &A[4], bytes))
    return NULL;
  return status_result(env, "prepackInt4Q8", qg_prepack_int4_q8(A[0].p, n, k, (int)bs, A[4].p));
}

static napi_value js_gemv_int4_q8_prepacked(napi_env env, napi_callback_info info) {
  ARGS("gemvInt4Q8Prepacked", "UFuNNIFFI", "prepacked,scales,zeroPoints,n,k,blockSize,x,y,threads");
  const int64_t n = A[3].i, k = A[4].i, bs = A[5].i, il = qg_prepack_int4_q8_bytes(n, k, (int)bs);
  if (il <= 0) return status_result(env, "gemvInt4Q8Prepacked", QG_ENOKERNEL);
  if (!need_len(env, "gemvInt4Q8Prepacked", "prepacked", &A[0], il) || !int_weight_lens(env, "gemvInt4Q8Prepacked", &A[0], &A[1], &A[2], n, k, 4, bs) ||
      !need_len(env, "gemvInt4Q8Prepacked", "x", &A[6], k) || !need_len(env, "gemvInt4Q8Prepacked", "y", &A[7], n))
    return NULL;
  void* ws = q8_workspace(qg_gemv_q8_workspace_bytes(k, (int)bs));
  if (!ws) return status_result(env, "gemvInt4Q8Prepacked", QG_EINVAL);
  const int rc = qg_gemv_int4_q8_prepacked(A[0].p, A[1].p, A[2].p, n, k, (int)bs, A[6].p, A[7].p, ws, threads_of(A[8].i));
  return status_result(env, "gemvInt4Q8Prepacked", rc);
}

static napi_value js_gemm_int4_q8(napi_env env, napi_callback_info info) {
  ARGS("gemmInt4Q8", "UFuNNIFNFI", "packed,scales,zeroPoints,n,k,blockSize,x,m,y,threads");
  const int64_t n = A[3].i, k = A[4].i, bs = A[5].i, m = A[7].i;
  if (!int_weight_lens(env, "gemmInt4Q8", &A[0], &A[1], &A[2], n, k, 4, bs) || !need_len(env, "gemmInt4Q8", "x", &A[6], m * k) ||
      !need_len(env, "gemmInt4Q8", "y", &A[8], m * n))
    return NULL;
  const int64_t bytes = qg_gemm_q8_workspace_bytes(m, k, (int)bs);
  if (bytes <= 0) return status_result(env, "gemmInt4Q8", QG_EINVAL);
  void* ws = q8_workspace(bytes);
  if (!ws) return status_result(env, "gemmInt4Q8", QG_EINVAL);
  const int rc = qg_gemm_int4_q8(A[0].p, A[1].p, A[2].p, n, k, (int)bs, A[6].p, m, A[8].p, ws, threads_of(A[9].i));
  return status_result(env, "gemmInt4Q8", rc);
}

static int lut_lens(napi_env env, const char* fn, int64_t fmt, arg_t* packed, arg_t* scales, arg_t* table, int64_t n, int64_t k,
                    int64_t bs) {
  if (bs < 1) return 1;
  const int64_t bpr = (k + bs - 1) / bs, cb = fmt == QG_FMT_FP8 ? 8 : 4;
  return need_len(env, fn, "packed", packed, n * bpr * ((bs * cb + 7) / 8)) && need_len(env, fn, "scales", scales, n * bpr) &&
         need_len(env, fn, "table", table, fmt == QG_FMT_CODEBOOK ? 16 : 0);
}

static napi_value js_quantize_lut(napi_env env, napi_callback_info info) {
  ARGS("quantizeLut", "IFNNIfIUfI", "format,wT,n,k,blockSize,table,tableLength,packed,scales,threads");
  const int64_t n = A[2].i, k = A[3].i;
  if (!need_len(env, "quantizeLut", "wT", &A[1], n * k) || !lut_lens(env, "quantizeLut", A[0].i, &A[7], &A[8], &A[5], n, k, A[4].i))
    return NULL;
  return status_result(env, "quantizeLut", qg_quantize_lut((int)A[0].i, A[1].p, n, k, (int)A[4].i, A[5].p, (int)A[6].i, A[7].p,
                                                           A[8].p, threads_of(A[9].i)));
}

static napi_value js_dequantize_lut(napi_env env, napi_callback_info info) {
  ARGS("dequantizeLut", "IUffNNIF", "format,packed,scales,table,n,k,blockSize,out");
  const int64_t n = A[4].i, k = A[5].i;
  if (!lut_lens(env, "dequantizeLut", A[0].i, &A[1], &A[2], &A[3], n, k, A[6].i) || !need_len(env, "dequantizeLut", "out", &A[7], n * k))
    return NULL;
  return status_result(env, "dequantizeLut", qg_dequantize_lut((int)A[0].i, A[1].p, A[2].p, A[3].p, n, k, (int)A[6].i, A[7].p));
}

static napi_value js_gemm_lut(napi_env env, napi_callback_info info) {
  ARGS("gemmLut", "IUffNNIFNFI", "format,packed,scales,table,n,k,blockSize,x,m,y,threads");
  const int64_t n = A[4].i, k = A[5].i, m = A[8].i;
  if (!lut_lens(env, "gemmLut", A[0].i, &A[1], &A[2], &A[3], n, k, A[6].i) || !need_len(env, "gemmLut", "x", &A[7], m * k) ||
      !need_len(env, "gemmLut", "y", &A[9], m * n))
    return NULL;
  return status_result(env, "gemmLut", qg_gemm_lut((int)A[0].i, A[1].p, A[2].p, A[3].p, n, k, (int)A[6].i, A[7].p, m, A[9].p,
                                                   threads_of(A[10].i)));
}

static napi_value js_codebook_fit(napi_env env, napi_callback_info info) {
  ARGS("codebookFit", "FIIF", "w,entries,iterations,table");
  if (!need_len(env, "codebookFit", "table", &A[3], 16)) return NULL;
  return status_result(env, "codebookFit", qg_codebook_fit(A[0].p, A[0].len, (int)A[1].i, (int)A[2].i, A[3].p));
}

static napi_value js_gemm_f32(napi_env env, napi_callback_info info) {
  ARGS("gemmF32", "FNNFNFI", "w,n,k,x,m,y,threads");
  const int64_t n = A[1].i, k = A[2].i, m = A[4].i;
  if (!need_len(env, "gemmF32", "w", &A[0], n * k) || !need_len(env, "gemmF32", "x", &A[3], m * k) ||
      !need_len(env, "gemmF32", "y", &A[5], m * n))
    return NULL;
  return status_result(env, "gemmF32", qg_gemm_f32(A[0].p, n, k, A[3].p, m, A[5].p, threads_of(A[6].i)));
}

static napi_value js_f32_to_f16(napi_env env, napi_callback_info info) {
  ARGS("f32ToF16", "FH", "input,out");
  if (!need_len(env, "f32ToF16", "out", &A[1], A[0].len)) return NULL;
  return status_result(env, "f32ToF16", qg_f32_to_f16(A[0].p, A[0].len, A[1].p));
}

static napi_value js_f16_to_f32(napi_env env, napi_callback_info info) {
  ARGS("f16ToF32", "HF", "input,out");
  if (!need_len(env, "f16ToF32", "out", &A[1], A[0].len)) return NULL;
  return status_result(env, "f16ToF32", qg_f16_to_f32(A[0].p, A[0].len, A[1].p));
}

static napi_value js_read_sum(napi_env env, napi_callback_info info) {
  ARGS("readSum", "FI", "buffer,threads");
  napi_value r;
  napi_create_double(env, qg_read_sum(A[0].p, A[0].len, threads_of(A[1].i)), &r);
  return r;
}

/* Bytes to skip from the start of a Uint8Array's data to the next multiple of `alignment` (a power of two up to
 * 4096): the kernels' 64-byte loads of packed weights run at their speed only on cache-line-aligned rows, and
 * large ArrayBuffers come from mmap-backed malloc chunks, 16 bytes past a page boundary. */
static napi_value js_align_offset(napi_env env, napi_callback_info info) {
  ARGS("alignOffset", "UN", "buffer,alignment");
  const int64_t al = A[1].i;
  if (al < 1 || al > 4096 || (al & (al - 1))) return throw_type(env, "alignOffset", "alignment", "a power of two up to 4096");
  napi_value r;
  napi_create_int64(env, (int64_t)((uint64_t)(-(intptr_t)A[0].p) & (uint64_t)(al - 1)), &r);
  return r;
}

/* Asks Linux for transparent huge pages over the whole 2 MiB pages inside a Uint8Array's data (madvise
 * MADV_HUGEPAGE, where THP is in "madvise" mode as on Debian and Ubuntu); returns the bytes advised (0 where
 * the platform has no such advice or refused it). A fresh large ArrayBuffer is untouched mmap memory: each 4 KiB
 * page faults in on first write, which costs a 4096 x 4096 float transpose 30 ms of its 50 on this machine. */
static napi_value js_advise_huge_pages(napi_env env, napi_callback_info info) {
  ARGS("adviseHugePages", "U", "buffer");
  int64_t advised = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20, p = (uintptr_t)A[0].p;
  const uintptr_t a = (p + huge - 1) & ~(huge - 1), e = (p + (uintptr_t)A[0].len) & ~(huge - 1);
  if (p && e > a && madvise((void*)a, e - a, MADV_HUGEPAGE) == 0) advised = (int64_t)(e - a);
#endif
  napi_value r;
  napi_create_int64(env, advised, &r);
  return r;
}

static napi_value js_isa(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_string_utf8(env, qg_isa(), NAPI_AUTO_LENGTH, &r);
  return r;
}

static napi_value js_kernel_impl(napi_env env, napi_callback_info info) {
  ARGS("kernelImpl", "II", "op,format");
  napi_value r;
  napi_create_int32(env, qg_kernel_impl((int)A[0].i, (int)A[1].i), &r);
  return r;
}

static napi_value js_force_ref(napi_env env, napi_callback_info info) {
  ARGS("forceRef", "B", "on");
  qg_force_ref((int)A[0].i);
  return status_result(env, "forceRef", QG_OK);
}

static napi_value js_struct_sizes(napi_env env, napi_callback_info info) {
  (void)info;
  int32_t sizes[64];
  const int count = qg_struct_sizes(sizes, 64);
  napi_value arr;
  napi_create_array_with_length(env, (size_t)count, &arr);
  for (int i = 0; i < count; i++) {
    napi_value v;
    napi_create_int32(env, sizes[i], &v);
    napi_set_element(env, arr, (uint32_t)i, v);
  }
  return arr;
}

static napi_value js_format_field(napi_env env, napi_callback_info info) {
  ARGS("formatField", "II", "format,field");
  napi_value r;
  napi_create_int32(env, qg_format_field((int)A[0].i, (int)A[1].i), &r);
  return r;
}

static napi_value js_transpose_f32(napi_env env, napi_callback_info info) {
  ARGS("transposeF32", "FNNFI", "input,rows,cols,out,threads");
  const int64_t rows = A[1].i, cols = A[2].i;
  if (!need_len(env, "transposeF32", "input", &A[0], rows * cols) || !need_len(env, "transposeF32", "out", &A[3], rows * cols))
    return NULL;
  return status_result(env, "transposeF32", qg_transpose_f32(A[0].p, rows, cols, A[3].p, threads_of(A[4].i)));
}

static napi_value js_dequantize_codes(napi_env env, napi_callback_info info) {
  ARGS("dequantizeCodes", "UFUNNIFI", "codes,scales,zeroPoints,n,k,blockSize,out,threads");
  const int64_t n = A[3].i, k = A[4].i, bs = A[5].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "dequantizeCodes", "codes", &A[0], n * bpr * bs) || !need_len(env, "dequantizeCodes", "scales", &A[1], n * bpr) ||
      !need_len(env, "dequantizeCodes", "zeroPoints", &A[2], n * bpr) || !need_len(env, "dequantizeCodes", "out", &A[6], n * k))
    return NULL;
  return status_result(env, "dequantizeCodes", qg_dequantize_codes(A[0].p, A[1].p, A[2].p, n, k, (int)bs, A[6].p, threads_of(A[7].i)));
}

static napi_value js_weight_error(napi_env env, napi_callback_info info) {
  ARGS("weightError", "FFNNDDD", "w,deq,n,k,sums,colErr,colNorm");
  const int64_t n = A[2].i, k = A[3].i;
  if (!need_len(env, "weightError", "w", &A[0], n * k) || !need_len(env, "weightError", "deq", &A[1], n * k) ||
      !need_len(env, "weightError", "sums", &A[4], 3) || !need_len(env, "weightError", "colErr", &A[5], k) ||
      !need_len(env, "weightError", "colNorm", &A[6], k))
    return NULL;
  return status_result(env, "weightError", qg_weight_error(A[0].p, A[1].p, n, k, A[4].p, A[5].p, A[6].p));
}

static napi_value js_weight_error_codes(napi_env env, napi_callback_info info) {
  ARGS("weightErrorCodes", "FUFUNNIDDD", "w,codes,scales,zeroPoints,n,k,blockSize,sums,colErr,colNorm");
  const int64_t n = A[4].i, k = A[5].i, bs = A[6].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "weightErrorCodes", "w", &A[0], n * k) || !need_len(env, "weightErrorCodes", "codes", &A[1], n * bpr * bs) ||
      !need_len(env, "weightErrorCodes", "scales", &A[2], n * bpr) || !need_len(env, "weightErrorCodes", "zeroPoints", &A[3], n * bpr) ||
      !need_len(env, "weightErrorCodes", "sums", &A[7], 3) || !need_len(env, "weightErrorCodes", "colErr", &A[8], k) ||
      !need_len(env, "weightErrorCodes", "colNorm", &A[9], k))
    return NULL;
  if (bs > QG_MAX_BLOCK) return status_result(env, "weightErrorCodes", QG_EINVAL);
  return status_result(env, "weightErrorCodes", qg_weight_error_codes(A[0].p, A[1].p, A[2].p, A[3].p, n, k, (int)bs, A[7].p, A[8].p, A[9].p));
}

/* Returns false (no throw) when a code is outside the alphabet, so the caller can name it. */
static napi_value js_histogram_u8(napi_env env, napi_callback_info info) {
  ARGS("histogramU8", "UID", "codes,alphabet,histogram");
  if (!need_len(env, "histogramU8", "histogram", &A[2], A[1].i)) return NULL;
  napi_value r;
  napi_get_boolean(env, qg_histogram_u8(A[0].p, A[0].len, (int)A[1].i, A[2].p) == QG_OK, &r);
  return r;
}

static napi_value js_quantize_int_weighted(napi_env env, napi_callback_info info) {
  ARGS("quantizeIntWeighted", "FNNIIBBFUFUI", "wT,n,k,bits,blockSize,symmetric,clipSearch,importance,codes,scales,zeroPoints,threads");
  const int64_t n = A[1].i, k = A[2].i, bs = A[4].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "quantizeIntWeighted", "wT", &A[0], n * k) || !need_len(env, "quantizeIntWeighted", "importance", &A[7], k) ||
      !need_len(env, "quantizeIntWeighted", "codes", &A[8], n * bpr * bs) ||
      !need_len(env, "quantizeIntWeighted", "scales", &A[9], n * bpr) || !need_len(env, "quantizeIntWeighted", "zeroPoints", &A[10], n * bpr))
    return NULL;
  return status_result(env, "quantizeIntWeighted",
                       qg_quantize_int_weighted(A[0].p, n, k, (int)A[3].i, (int)bs, (int)A[5].i, (int)A[6].i, A[7].p, A[8].p,
                                                A[9].p, A[10].p, threads_of(A[11].i)));
}

static napi_value js_gptq(napi_env env, napi_callback_info info) {
  ARGS("gptq", "FNNDIIBBRBBBUFUI",
       "wT,n,k,hessian,bits,blockSize,symmetric,clipSearch,dampRatio,actOrder,staticGroups,zeroDeadColumns,codes,scales,"
       "zeroPoints,threads");
  const int64_t n = A[1].i, k = A[2].i, bs = A[5].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "gptq", "wT", &A[0], n * k) || !need_len(env, "gptq", "hessian", &A[3], k * k) ||
      !need_len(env, "gptq", "codes", &A[12], n * bpr * bs) || !need_len(env, "gptq", "scales", &A[13], n * bpr) ||
      !need_len(env, "gptq", "zeroPoints", &A[14], n * bpr))
    return NULL;
  const int64_t bytes = qg_gptq_workspace_bytes(n, k);
  if (bytes <= 0) return status_result(env, "gptq", QG_EINVAL);
  void* ws = malloc((size_t)bytes);
  if (!ws) {
    napi_throw_error(env, "ERR_MEMORY", "gptq: cannot allocate the workspace");
    return NULL;
  }
  const int rc = qg_gptq(A[0].p, n, k, A[3].p, (int)A[4].i, (int)bs, (int)A[6].i, (int)A[7].i, A[8].r, (int)A[9].i, (int)A[10].i,
                         (int)A[11].i, A[12].p, A[13].p, A[14].p, ws, threads_of(A[15].i));
  free(ws);
  if (rc == -3) {
    napi_throw_range_error(env, "ERR_NOT_POSITIVE_DEFINITE",
                           "gptq: the damped Hessian is not positive definite (NaN or negative eigenvalues in the calibration statistics?)");
    return NULL;
  }
  return status_result(env, "gptq", rc);
}

static napi_value js_sum_quadratic_forms(napi_env env, napi_callback_info info) {
  ARGS("sumQuadraticForms", "DDNNI", "h,d,rows,k,threads");
  const int64_t rows = A[2].i, k = A[3].i;
  if (!need_len(env, "sumQuadraticForms", "h", &A[0], k * k) || !need_len(env, "sumQuadraticForms", "d", &A[1], rows * k)) return NULL;
  const int64_t bytes = qg_quadratic_forms_workspace_bytes(rows, k);
  if (bytes <= 0) return status_result(env, "sumQuadraticForms", QG_EINVAL);
  void* ws = malloc((size_t)bytes);
  if (!ws) {
    napi_throw_error(env, "ERR_MEMORY", "sumQuadraticForms: cannot allocate the workspace");
    return NULL;
  }
  double total = 0;
  const int rc = qg_sum_quadratic_forms(A[0].p, A[1].p, rows, k, ws, threads_of(A[4].i), &total);
  free(ws);
  if (rc != QG_OK) return status_result(env, "sumQuadraticForms", rc);
  napi_value r;
  napi_create_double(env, total, &r);
  return r;
}

/* ---- table formats as stored by the quantize stage; low-rank, calibration and element-wise passes ---- */

static napi_value js_quantize_table(napi_env env, napi_callback_info info) {
  ARGS("quantizeTable", "FNNIfIIUFI", "wT,n,k,blockSize,table,tableLength,scaleMode,codes,scales,threads");
  const int64_t n = A[1].i, k = A[2].i, bs = A[3].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "quantizeTable", "wT", &A[0], n * k) || !need_len(env, "quantizeTable", "table", &A[4], A[5].i) ||
      !need_len(env, "quantizeTable", "codes", &A[7], n * bpr * bs) || !need_len(env, "quantizeTable", "scales", &A[8], n * bpr))
    return NULL;
  return status_result(env, "quantizeTable",
                       qg_quantize_table(A[0].p, n, k, (int)bs, A[4].p, (int)A[5].i, (int)A[6].i, A[7].p, A[8].p, threads_of(A[9].i)));
}

static napi_value js_dequantize_table(napi_env env, napi_callback_info info) {
  ARGS("dequantizeTable", "UFFNNIF", "codes,scales,table,n,k,blockSize,out");
  const int64_t n = A[3].i, k = A[4].i, bs = A[5].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "dequantizeTable", "codes", &A[0], n * bpr * bs) || !need_len(env, "dequantizeTable", "scales", &A[1], n * bpr) ||
      !need_len(env, "dequantizeTable", "out", &A[6], n * k))
    return NULL;
  return status_result(env, "dequantizeTable", qg_dequantize_table(A[0].p, A[1].p, A[2].p, (int)A[2].len, n, k, (int)bs, A[6].p));
}

static napi_value js_sub_f32_to_f64(napi_env env, napi_callback_info info) {
  ARGS("subF32ToF64", "FFD", "a,b,out");
  if (!need_len(env, "subF32ToF64", "b", &A[1], A[0].len) || !need_len(env, "subF32ToF64", "out", &A[2], A[0].len)) return NULL;
  return status_result(env, "subF32ToF64", qg_sub_f32_to_f64(A[0].p, A[1].p, A[0].len, A[2].p));
}

static napi_value js_lowrank_et_v(napi_env env, napi_callback_info info) {
  ARGS("lowrankEtV", "DNNDNDI", "e,n,k,v,count,out,threads");
  const int64_t n = A[1].i, k = A[2].i, count = A[4].i;
  if (!need_len(env, "lowrankEtV", "e", &A[0], n * k) || !need_len(env, "lowrankEtV", "v", &A[3], count * n) ||
      !need_len(env, "lowrankEtV", "out", &A[5], k * count))
    return NULL;
  const int64_t bytes = qg_lowrank_et_v_workspace_bytes(n, k, count);
  void* ws = bytes > 0 ? malloc((size_t)bytes) : NULL;
  if (!ws) {
    napi_throw_error(env, "ERR_MEMORY", "lowrankEtV: cannot allocate the workspace");
    return NULL;
  }
  const int rc = qg_lowrank_et_v(A[0].p, n, k, A[3].p, count, A[5].p, ws, threads_of(A[6].i));
  free(ws);
  return status_result(env, "lowrankEtV", rc);
}

static napi_value js_lowrank_apply_g(napi_env env, napi_callback_info info) {
  ARGS("lowrankApplyG", "DNNDBDNDI", "e,n,k,h,diagonal,v,count,y,threads");
  const int64_t n = A[1].i, k = A[2].i, count = A[6].i;
  if (!need_len(env, "lowrankApplyG", "e", &A[0], n * k) || !need_len(env, "lowrankApplyG", "h", &A[3], A[4].i ? k : k * k) ||
      !need_len(env, "lowrankApplyG", "v", &A[5], count * n) || !need_len(env, "lowrankApplyG", "y", &A[7], count * n))
    return NULL;
  const int64_t bytes = qg_lowrank_apply_g_workspace_bytes(n, k, count);
  if (bytes < 0) return status_result(env, "lowrankApplyG", QG_EINVAL);
  void* ws = malloc((size_t)(bytes > 0 ? bytes : 8));
  if (!ws) {
    napi_throw_error(env, "ERR_MEMORY", "lowrankApplyG: cannot allocate the workspace");
    return NULL;
  }
  const int rc = qg_lowrank_apply_g(A[0].p, n, k, A[3].p, (int)A[4].i, A[5].p, count, A[7].p, ws, threads_of(A[8].i));
  free(ws);
  return status_result(env, "lowrankApplyG", rc);
}

static napi_value js_lowrank_weighted_rows(napi_env env, napi_callback_info info) {
  ARGS("lowrankWeightedRows", "DNNDDI", "e,n,k,h,out,threads");
  const int64_t n = A[1].i, k = A[2].i;
  if (!need_len(env, "lowrankWeightedRows", "e", &A[0], n * k) || !need_len(env, "lowrankWeightedRows", "h", &A[3], k * k) ||
      !need_len(env, "lowrankWeightedRows", "out", &A[4], n * k))
    return NULL;
  return status_result(env, "lowrankWeightedRows", qg_lowrank_weighted_rows(A[0].p, n, k, A[3].p, A[4].p, threads_of(A[5].i)));
}

static napi_value js_add_low_rank(napi_env env, napi_callback_info info) {
  ARGS("addLowRank", "FFFNNNI", "out,a,b,n,k,rank,threads");
  const int64_t n = A[3].i, k = A[4].i, rank = A[5].i;
  if (!need_len(env, "addLowRank", "out", &A[0], n * k) || !need_len(env, "addLowRank", "a", &A[1], k * rank) ||
      !need_len(env, "addLowRank", "b", &A[2], rank * n))
    return NULL;
  const int64_t bytes = qg_add_low_rank_workspace_bytes(k, rank);
  if (bytes <= 0) return status_result(env, "addLowRank", QG_EINVAL);
  void* ws = malloc((size_t)bytes);
  if (!ws) {
    napi_throw_error(env, "ERR_MEMORY", "addLowRank: cannot allocate the workspace");
    return NULL;
  }
  const int rc = qg_add_low_rank(A[0].p, A[1].p, A[2].p, n, k, rank, ws, threads_of(A[6].i));
  free(ws);
  return status_result(env, "addLowRank", rc);
}

static napi_value js_scale_columns(napi_env env, napi_callback_info info) {
  ARGS("scaleColumns", "FNNFFI", "input,rows,cols,scales,out,threads");
  const int64_t rows = A[1].i, cols = A[2].i;
  if (!need_len(env, "scaleColumns", "input", &A[0], rows * cols) || !need_len(env, "scaleColumns", "scales", &A[3], cols) ||
      !need_len(env, "scaleColumns", "out", &A[4], rows * cols))
    return NULL;
  return status_result(env, "scaleColumns", qg_scale_columns_f32(A[0].p, rows, cols, A[3].p, A[4].p, threads_of(A[5].i)));
}

static napi_value js_activation_stats(napi_env env, napi_callback_info info) {
  ARGS("activationStats", "FNNDDDNI", "data,rows,channels,sumAbs,sumSq,gram,gramRows,threads");
  const int64_t rows = A[1].i, c = A[2].i;
  if (!need_len(env, "activationStats", "data", &A[0], rows * c) || !need_len(env, "activationStats", "sumAbs", &A[3], c) ||
      !need_len(env, "activationStats", "sumSq", &A[4], c) || !need_len(env, "activationStats", "gram", &A[5], A[6].i > 0 ? c * c : 0))
    return NULL;
  return status_result(env, "activationStats", qg_activation_stats(A[0].p, rows, c, A[3].p, A[4].p, A[5].p, A[6].i, threads_of(A[7].i)));
}

static napi_value js_transpose_u8(napi_env env, napi_callback_info info) {
  ARGS("transposeU8", "UNNNUI", "input,rows,cols,stride,out,threads");
  const int64_t rows = A[1].i, cols = A[2].i, stride = A[3].i;
  if (!need_len(env, "transposeU8", "input", &A[0], rows > 0 ? (rows - 1) * stride + cols : 0) ||
      !need_len(env, "transposeU8", "out", &A[4], rows * cols))
    return NULL;
  return status_result(env, "transposeU8", qg_transpose_u8(A[0].p, rows, cols, stride, A[4].p, threads_of(A[5].i)));
}

static napi_value js_normalize_blocks(napi_env env, napi_callback_info info) {
  ARGS("normalizeBlocks", "FNNIF", "wT,n,k,blockSize,out");
  const int64_t n = A[1].i, k = A[2].i;
  if (!need_len(env, "normalizeBlocks", "wT", &A[0], n * k) || !need_len(env, "normalizeBlocks", "out", &A[4], n * k)) return NULL;
  return status_result(env, "normalizeBlocks", qg_normalize_blocks(A[0].p, n, k, (int)A[3].i, A[4].p));
}

static napi_value js_pack_nibbles_hi(napi_env env, napi_callback_info info) {
  ARGS("packNibblesHigh", "UNU", "codes,count,out");
  const int64_t count = A[1].i;
  if (!need_len(env, "packNibblesHigh", "codes", &A[0], count) || !need_len(env, "packNibblesHigh", "out", &A[2], (count + 1) / 2)) return NULL;
  return status_result(env, "packNibblesHigh", qg_pack_nibbles_hi(A[0].p, count, A[2].p));
}

static napi_value js_weight_moments(napi_env env, napi_callback_info info) {
  ARGS("weightMoments", "FRD", "w,threshold,out");
  if (!need_len(env, "weightMoments", "out", &A[2], 3)) return NULL;
  return status_result(env, "weightMoments", qg_weight_moments(A[0].p, A[0].len, A[1].r, A[2].p));
}

static napi_value js_weighted_sq_error(napi_env env, napi_callback_info info) {
  ARGS("weightedSquaredError", "FFNNDD", "w,deq,n,k,h,out");
  const int64_t n = A[2].i, k = A[3].i;
  if (!need_len(env, "weightedSquaredError", "w", &A[0], n * k) || !need_len(env, "weightedSquaredError", "deq", &A[1], n * k) ||
      !need_len(env, "weightedSquaredError", "h", &A[4], A[4].len ? k : 0) || !need_len(env, "weightedSquaredError", "out", &A[5], 1))
    return NULL;
  return status_result(env, "weightedSquaredError", qg_weighted_sq_error(A[0].p, A[1].p, n, k, A[4].len ? A[4].p : NULL, A[5].p));
}

static napi_value js_refine_scales(napi_env env, napi_callback_info info) {
  ARGS("refineScales", "FNNIIUDIUFI", "wT,n,k,bits,blockSize,zeroPoints,meanSquare,rounds,codes,scales,threads");
  const int64_t n = A[1].i, k = A[2].i, bs = A[4].i, bpr = bs > 0 ? (k + bs - 1) / bs : 0;
  if (!need_len(env, "refineScales", "wT", &A[0], n * k) || !need_len(env, "refineScales", "zeroPoints", &A[5], n * bpr) ||
      !need_len(env, "refineScales", "meanSquare", &A[6], k) || !need_len(env, "refineScales", "codes", &A[8], n * bpr * bs) ||
      !need_len(env, "refineScales", "scales", &A[9], n * bpr))
    return NULL;
  return status_result(env, "refineScales", qg_refine_scales(A[0].p, n, k, (int)A[3].i, (int)bs, A[5].p, A[6].p, (int)A[7].i, A[8].p,
                                                             A[9].p, threads_of(A[10].i)));
}

static napi_value js_sum_quadratic_forms_segments(napi_env env, napi_callback_info info) {
  ARGS("sumQuadraticFormsSegments", "DDNNNDI", "h,d,rows,k,segmentRows,out,threads");
  const int64_t rows = A[2].i, k = A[3].i, seg = A[4].i;
  if (seg < 1) return status_result(env, "sumQuadraticFormsSegments", QG_EINVAL);
  if (!need_len(env, "sumQuadraticFormsSegments", "h", &A[0], k * k) || !need_len(env, "sumQuadraticFormsSegments", "d", &A[1], rows * k) ||
      !need_len(env, "sumQuadraticFormsSegments", "out", &A[5], rows / seg))
    return NULL;
  const int64_t bytes = qg_quadratic_forms_workspace_bytes(rows, k);
  void* ws = bytes > 0 ? malloc((size_t)bytes) : NULL;
  if (!ws) {
    napi_throw_error(env, "ERR_MEMORY", "sumQuadraticFormsSegments: cannot allocate the workspace");
    return NULL;
  }
  const int rc = qg_sum_quadratic_forms_segments(A[0].p, A[1].p, rows, k, seg, ws, threads_of(A[6].i), A[5].p);
  free(ws);
  return status_result(env, "sumQuadraticFormsSegments", rc);
}

/* Returns false (no throw) when a value is not finite, so the caller can say so. */
static napi_value js_sort_prefix(napi_env env, napi_callback_info info) {
  ARGS("sortPrefix", "FDDDD", "values,x,w,wx,wxx");
  const int64_t n = A[0].len;
  if (!need_len(env, "sortPrefix", "x", &A[1], n) || !need_len(env, "sortPrefix", "w", &A[2], n + 1) ||
      !need_len(env, "sortPrefix", "wx", &A[3], n + 1) || !need_len(env, "sortPrefix", "wxx", &A[4], n + 1))
    return NULL;
  napi_value r;
  napi_get_boolean(env, qg_sort_prefix_f32(A[0].p, n, A[1].p, A[2].p, A[3].p, A[4].p) == QG_OK, &r);
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  qg_threads_install();
#if defined(__GLIBC__)
  /* The gate frees large buffers (weights read from external data, packed codes, ONNX Runtime sessions of a
     model's size) and then loads the next model. glibc raises its mmap threshold to the size of each freed
     mmapped block (up to 32 MiB), after which such buffers come from heaps it keeps once freed: a 1.1B-parameter
     gate then held 1.5-2 GB of freed memory beside the float session. A fixed threshold keeps every block of
     256 KiB and more in its own mapping, returned to the system when freed. */
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
  const struct { const char* name; napi_callback cb; } fns[] = {
      {"quantizeInt", js_quantize_int},   {"packBits", js_pack_bits},       {"unpackBits", js_unpack_bits},
      {"dequantizeInt", js_dequantize_int}, {"gemmInt", js_gemm_int}, {"gemvInt4Q8", js_gemv_int4_q8}, {"prepackInt4Q8Bytes", js_prepack_int4_q8_bytes}, {"prepackInt4Q8", js_prepack_int4_q8}, {"gemvInt4Q8Prepacked", js_gemv_int4_q8_prepacked},       {"quantizeLut", js_quantize_lut},
      {"dequantizeLut", js_dequantize_lut}, {"gemmLut", js_gemm_lut},       {"codebookFit", js_codebook_fit},
      {"gemmF32", js_gemm_f32},           {"f32ToF16", js_f32_to_f16},      {"f16ToF32", js_f16_to_f32},
      {"readSum", js_read_sum},           {"alignOffset", js_align_offset}, {"adviseHugePages", js_advise_huge_pages},           {"isa", js_isa},                  {"kernelImpl", js_kernel_impl},
      {"forceRef", js_force_ref},         {"structSizes", js_struct_sizes}, {"formatField", js_format_field},
      {"transposeF32", js_transpose_f32}, {"dequantizeCodes", js_dequantize_codes}, {"weightError", js_weight_error},
      {"histogramU8", js_histogram_u8},   {"quantizeIntWeighted", js_quantize_int_weighted}, {"gptq", js_gptq}, {"gemmInt4Q8", js_gemm_int4_q8},
      {"weightErrorCodes", js_weight_error_codes},
      {"sumQuadraticForms", js_sum_quadratic_forms},
      {"quantizeTable", js_quantize_table}, {"dequantizeTable", js_dequantize_table}, {"subF32ToF64", js_sub_f32_to_f64},
      {"lowrankEtV", js_lowrank_et_v}, {"lowrankApplyG", js_lowrank_apply_g}, {"lowrankWeightedRows", js_lowrank_weighted_rows},
      {"addLowRank", js_add_low_rank}, {"scaleColumns", js_scale_columns}, {"activationStats", js_activation_stats},
      {"transposeU8", js_transpose_u8}, {"sortPrefix", js_sort_prefix}, {"normalizeBlocks", js_normalize_blocks},
      {"packNibblesHigh", js_pack_nibbles_hi}, {"weightMoments", js_weight_moments}, {"weightedSquaredError", js_weighted_sq_error},
      {"refineScales", js_refine_scales}, {"sumQuadraticFormsSegments", js_sum_quadratic_forms_segments},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
