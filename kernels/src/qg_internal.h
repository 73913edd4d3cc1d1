/* Internal: kernel signatures, the dispatch table, and float helpers shared by every variant. */
#ifndef QG_INTERNAL_H
#define QG_INTERNAL_H
#include "../include/qg_kernels.h"

#define QG_MAX_BLOCK 256
#define QG_GEMM_TILE_M 64
#define QG_Q8_MAX_M 128 /* int8-activation GEMM: activation rows per pass */

typedef struct {
  const uint8_t* packed;
  const float* scales;
  const uint8_t* zp; /* NULL: symmetric */
  const float* table;
  int64_t n, k, bpr, block_bytes, row_bytes;
  int bits, bs, fmt;
} qg_weight;

/* Rows [n0, n1) of y[m][n] = x[m][k] . W^T; m <= QG_GEMM_TILE_M. */
typedef void (*qg_gemm_fn)(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1);
/* Rows [r0, r1) of the integer quantizer. */
typedef void (*qg_quant_int_fn)(const float* wT, int64_t k, int bits, int bs, int sym, int clip, uint8_t* codes,
                                float* scales, uint8_t* zp, int64_t r0, int64_t r1);
typedef void (*qg_gemm_f32_fn)(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int64_t n0,
                               int64_t n1);
typedef float (*qg_read_sum_fn)(const float* buf, int64_t count);
/* Activations quantized per weight block (bs values share one scale, as ONNX Runtime's accuracy_level 4
 * does), so a block's products add up in int32 and are converted and scaled once. xq is permuted so that
 * each 32-chunk lists even then odd positions (the order of low then high nibbles of 16 packed bytes).
 * db: per block, the scale amax / 127; dx: per chunk, its block's scale (the kernels that scale chunk by
 * chunk); sq: per block, the sum of its codes; dsb = db * sq, the zero-point term in float, subtracted once
 * per block. */
typedef struct {
  const int8_t* xq;
  const float* dx;
  const float* db;
  const int32_t* sq;
  const float* dsb;
  /* Quads of chunks 4q..4q+3 (the first chunks / 4 * 4), for the register-tiled kernels: 128 bytes
   * [low-nibble codes of the four chunks | high-nibble codes], 64-byte aligned; dxl: 16 floats per
   * quad, lane l holding dx of chunk 4q + l / 4 (the lanes a 4-byte dot product of that chunk lands in). */
  const int8_t* xq4;
  const float* dxl;
} qg_q8_act;
/* Quantize x[0..k) (zeros past k) into `blocks` blocks of bs values (bs % 32 == 0): xq as qg_q8_act (even
 * positions first in each chunk), db[b] = amax / 127 over the block, sq[b] = the sum of its codes. Every
 * variant is bit-identical to the reference. */
typedef void (*qg_quant_act_q8_fn)(const float* x, int64_t k, int64_t blocks, int bs, int8_t* xq, float* db, int32_t* sq);
typedef void (*qg_gemv_q8_fn)(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1);
/* Rows [n0, n1) of y[m][n] for m activation rows quantized as qg_q8_act (acts[m]). */
typedef void (*qg_gemm_q8_fn)(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t n0, int64_t n1);
/* float64 c[r][j] -= a[r][t] * b[t][j] for t ascending, product rounded before the subtraction, r < rows,
 * j < cols (row strides ldc, lda, ldb): the exact-order update of GPTQ and its Cholesky (qg_rank_update.h). */
typedef void (*qg_rank_update_fn)(double* c, int64_t ldc, const double* a, int64_t lda, const double* b, int64_t ldb,
                                  int64_t rows, int64_t cols, int64_t depth);

typedef struct {
  const char* isa;
  qg_gemm_fn gemm_int[9];           /* by bits: 2, 3, 4, 8 */
  qg_gemm_fn gemv_int[9];           /* M = 1 specializations */
  qg_gemm_fn gemm_lut[QG_FMT_COUNT];
  qg_quant_int_fn quant_int;
  qg_gemm_f32_fn gemm_f32;
  qg_read_sum_fn read_sum;
  qg_gemv_q8_fn gemv_int4_q8;
  /* gemv_int4_q8 on the row-interleaved layout of qg_prepack_int4_q8 (w->packed); NULL where no kernel reads it */
  qg_gemv_q8_fn gemv_int4_q8_il;
  qg_rank_update_fn rank_update;
  qg_gemm_q8_fn gemm_int4_q8;
  qg_quant_act_q8_fn quant_act_q8;
} qg_dispatch;
void qg_quant_act_q8_ref(const float* x, int64_t k, int64_t blocks, int bs, int8_t* xq, float* db, int32_t* sq);
void qg_gemm_int4_q8_ref(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t n0, int64_t n1);
/* The dispatch in use (SIMD or, under qg_force_ref, the references). */
const qg_dispatch* qg_dispatch_table(void);
/* Portable reference of rank_update (qg_gptq.c). */
void qg_rank_update_ref(double* c, int64_t ldc, const double* a, int64_t lda, const double* b, int64_t ldb, int64_t rows,
                        int64_t cols, int64_t depth);
void qg_gemv_int4_q8_ref(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1);

/* The installed parallel-for (serial unless the host installed a pool). */
void qg_parallel_for(qg_task_fn task, void* ctx, int64_t count, int64_t grain, int threads);

/* References (qg_ref.c) */
void qg_gemm_int_ref(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1);
void qg_gemm_lut_ref(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1);
void qg_quantize_int_ref(const float* wT, int64_t k, int bits, int bs, int sym, int clip, uint8_t* codes,
                         float* scales, uint8_t* zp, int64_t r0, int64_t r1);
void qg_quantize_lut_ref(int fmt, const float* wT, int64_t k, int bs, const float* table, int table_len,
                         uint8_t* packed, float* scales, int64_t r0, int64_t r1);
void qg_gemm_f32_ref(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int64_t n0,
                     int64_t n1);
float qg_read_sum_ref(const float* buf, int64_t count);
void qg_fill_ref(qg_dispatch* d);
/* Tests: cap the instruction set the dispatch may pick (0 scalar, 1 AVX2, 2 AVX-512; -1 no cap). */
void qg_limit_isa(int level);

/* SIMD variants fill what they provide over the reference table. */
void qg_fill_avx2(qg_dispatch* d);
void qg_fill_avx512(qg_dispatch* d);
void qg_fill_simd128(qg_dispatch* d);
void qg_fill_neon(qg_dispatch* d);

extern const float qg_nf4_table[16];
extern const float qg_e2m1_table[16];
float qg_e4m3_decode(uint8_t c);
uint8_t qg_e4m3_encode(float x); /* round to nearest even, saturating at +-448 */

/* Round half away from zero (C roundf) without libm, identical on every target. */
static inline float qg_round_away(float x) {
  float t = __builtin_truncf(x);
  if (__builtin_fabsf(x - t) >= 0.5f) t += __builtin_copysignf(1.0f, x);
  return t;
}
/* Math.min(hi, Math.max(lo, x)) including NaN propagation. */
static inline float qg_js_clamp(float x, float lo, float hi) {
  if (x != x) return x;
  return x < lo ? lo : (x > hi ? hi : x);
}
/* Uint8Array store of an integral float in [0, 255] (NaN stores 0). */
static inline uint8_t qg_js_u8(float x) { return x != x ? 0 : (uint8_t)(int)x; }
static inline float qg_clip_ratio(int i) { return 1.0f - (float)i * 0.03125f; }

/* Code i of a dense LSB-first bitstream of `bits`-wide fields. */
static inline unsigned qg_get_code(const uint8_t* p, int64_t i, int bits) {
  int64_t pos = i * bits;
  unsigned v = p[pos >> 3];
  if ((pos & 7) + bits > 8) v |= (unsigned)p[(pos >> 3) + 1] << 8;
  return (v >> (pos & 7)) & ((1u << bits) - 1);
}
/* Scale and zero point of a block from its range, as blockParams() in blockwise.ts. */
typedef struct { float scale, zp; } block_params;

static inline block_params params_from_range(float lo, float hi, float ext, int bits, int sym, float ratio) {
  block_params p;
  const float qmax = (float)((1 << bits) - 1);
  if (sym) {
    const float mid = (float)(1 << (bits - 1));
    p.scale = (ext * ratio) / -mid;
    p.zp = mid;
    return p;
  }
  lo = lo * ratio;
  hi = hi * ratio;
  const float scale = (hi - lo) / qmax;
  if (scale == 0.0f) { p.scale = 0.0f; p.zp = 0.0f; return p; }
  const float inv = 1.0f / scale;
  p.scale = scale;
  p.zp = qg_js_clamp(qg_round_away(-lo * inv), 0.0f, qmax);
  return p;
}

#endif
