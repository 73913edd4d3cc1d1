/* QuantGate low-bit kernels: the public C API shared by the Node-API addon and the WebAssembly module.
 * Every entry returns QG_OK or a negative QG_E* code; none allocates (callers pass every buffer).
 * Weights are [n][k] row-major (MatMul's B transposed); activations x are [m][k]; outputs y are [m][n].
 */
#ifndef QG_KERNELS_H
#define QG_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "qg_formats.h"

#if defined(__wasm__)
#define QG_API(name) __attribute__((export_name(#name))) 
#else
#define QG_API(name)
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum { QG_OK = 0, QG_EINVAL = -1, QG_ENOKERNEL = -2 };

typedef enum {
  QG_OP_QUANTIZE = 0,
  QG_OP_DEQUANTIZE = 1,
  QG_OP_PACK = 2,
  QG_OP_GEMV = 3, /* M = 1 */
  QG_OP_GEMM = 4, /* M up to 64 per pass (larger M runs in passes of 64) */
  QG_OP_COUNT = 5
} qg_op;

/* Implementation that serves an op/format: 0 none, 1 scalar reference, 2 SIMD. */
QG_API(qg_kernel_impl) int qg_kernel_impl(int op, int fmt);
/* Name of the instruction set selected at start ("avx2", "avx512", "simd128", "neon", "scalar"). */
QG_API(qg_isa) const char* qg_isa(void);
/* 1: route every call to the scalar references (tests, benchmarks); 0: best kernels. */
QG_API(qg_force_ref) void qg_force_ref(int on);
/* Sizes of the block structs of qg_formats.h, in the order of QG_STRUCT_SIZE_NAMES (mirror test). */
QG_API(qg_struct_sizes) int qg_struct_sizes(int32_t* out, int cap);
QG_API(qg_format_field) int qg_format_field(int fmt, int field);

/* ---- integer formats: int2/3/4/8, MatMulNBits layout ---- */
/* Codes come out unpacked: [n][ceil(k/bs)*bs], padding past k holds the zero point; scales and zero
 * points [n][ceil(k/bs)]. Byte-identical to quantizeBlockwiseRef in src/quantize/blockwise.ts. */
QG_API(qg_quantize_int)
int qg_quantize_int(const float* wT, int64_t n, int64_t k, int bits, int bs, int symmetric, int clip_search,
                    uint8_t* codes, float* scales, uint8_t* zero_points, int threads);
/* LSB-first `bits`-wide fields, each group of `group_len` codes starting on a fresh byte. */
QG_API(qg_pack_bits) int qg_pack_bits(const uint8_t* codes, int64_t count, int bits, int64_t group_len, uint8_t* out);
QG_API(qg_unpack_bits)
int qg_unpack_bits(const uint8_t* packed, int bits, int64_t group_len, int64_t groups, uint8_t* out);
/* zero_points: unpacked [n][bpr] or NULL (2^(bits-1)). out: [n][k]. */
QG_API(qg_dequantize_int)
int qg_dequantize_int(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k,
                      int bits, int bs, float* out);
QG_API(qg_gemm_int)
int qg_gemm_int(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bits,
                int bs, const float* x, int64_t m, float* y, int threads);

/* int4 GEMV (M = 1) with activations quantized to int8 with one scale per weight block of bs values (as
 * ORT's accuracy_level 4 does): integer dot products summed in int32 over a block, about 3x less work
 * than the float path. Needs bs % 32 == 0; ws: qg_gemv_q8_workspace_bytes(k, bs) bytes (any alignment). */
QG_API(qg_gemv_q8_workspace_bytes) int64_t qg_gemv_q8_workspace_bytes(int64_t k, int bs);
QG_API(qg_gemv_int4_q8)
int qg_gemv_int4_q8(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bs,
                    const float* x, float* y, void* ws, int threads);
/* The int4 GEMV's own weight layout (as ONNX Runtime prepacks MatMulNBits weights at session creation): rows in
 * tiles of four, a tile's 64-byte quads interleaved row by row, so a tile is one sequential stream from memory
 * (the hardware prefetchers follow it; four separate row streams they do not, and software prefetch falls
 * short). qg_prepack_int4_q8_bytes: the size, 0 where no kernel reads the layout (then use qg_gemv_int4_q8) or the
 * rows end in a partial quad; qg_gemv_int4_q8_prepacked: qg_gemv_int4_q8's numbers, bit for bit. */
QG_API(qg_prepack_int4_q8_bytes) int64_t qg_prepack_int4_q8_bytes(int64_t n, int64_t k, int bs);
QG_API(qg_prepack_int4_q8) int qg_prepack_int4_q8(const uint8_t* packed, int64_t n, int64_t k, int bs, uint8_t* out);
QG_API(qg_gemv_int4_q8_prepacked)
int qg_gemv_int4_q8_prepacked(const uint8_t* prepacked, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k,
                              int bs, const float* x, float* y, void* ws, int threads);
/* y[m][n] = x[m][k] . W^T with each activation row quantized to int8 per weight block as qg_gemv_int4_q8 does
 * (the same numbers row by row, up to float summation order), register-tiled: each weight nibble is
 * unpacked once per tile of activation rows (docs/kernels.md). Any bs % 32 == 0 up to 256. */
QG_API(qg_gemm_q8_workspace_bytes) int64_t qg_gemm_q8_workspace_bytes(int64_t m, int64_t k, int bs);
QG_API(qg_gemm_int4_q8)
int qg_gemm_int4_q8(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bs,
                    const float* x, int64_t m, float* y, void* ws, int threads);

/* ---- table formats: NF4, FP4 (E2M1), MXFP4, FP8 (E4M3), codebook ---- */
/* packed: [n][bpr][bs*code_bits/8]; scales: [n][bpr] floats (MXFP4: exactly 2^(e-127), the E8M0
 * byte is the float's exponent field; codebook: unused, may be NULL); table: the codebook's 16
 * floats (unused entries never chosen: pass table_len), NULL for the other formats. */
QG_API(qg_quantize_lut)
int qg_quantize_lut(int fmt, const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len,
                    uint8_t* packed, float* scales, int threads);
QG_API(qg_dequantize_lut)
int qg_dequantize_lut(int fmt, const uint8_t* packed, const float* scales, const float* table, int64_t n, int64_t k,
                      int bs, float* out);
QG_API(qg_gemm_lut)
int qg_gemm_lut(int fmt, const uint8_t* packed, const float* scales, const float* table, int64_t n, int64_t k, int bs,
                const float* x, int64_t m, float* y, int threads);
/* 1-D Lloyd-Max codebook of `entries` (<= 16) values fitted to `count` samples, `iters` rounds. */
QG_API(qg_codebook_fit)
int qg_codebook_fit(const float* w, int64_t count, int entries, int iters, float* table_out);

/* ---- float32 baseline and helpers ---- */
QG_API(qg_gemm_f32)
int qg_gemm_f32(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int threads);
QG_API(qg_f32_to_f16) int qg_f32_to_f16(const float* in, int64_t count, uint16_t* out);
QG_API(qg_f16_to_f32) int qg_f16_to_f32(const uint16_t* in, int64_t count, float* out);
/* Reads `count` floats and returns their sum (memory-bandwidth probe). */
QG_API(qg_read_sum) float qg_read_sum(const float* buf, int64_t count, int threads);

/* ---- per-element passes around quantization (qg_prep.c), bit-identical to the TypeScript references ---- */
/* out[cols][rows] = in[rows][cols], in cache tiles. */
QG_API(qg_transpose_f32) int qg_transpose_f32(const float* in, int64_t rows, int64_t cols, float* out, int threads);
/* [n][k] floats from unpacked codes [n][bpr*bs]: (code - zp) * scale (dequantizeBlockwise). */
QG_API(qg_dequantize_codes)
int qg_dequantize_codes(const uint8_t* codes, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bs,
                        float* out, int threads);
/* float64 sums of d = w - deq: sums = {sum d^2, sum w^2, max |d|}, col_err[k] = sum over rows of d^2,
 * col_norm[k] = sum of w^2, in the reference's element order. */
QG_API(qg_weight_error)
int qg_weight_error(const float* w, const float* deq, int64_t n, int64_t k, double* sums, double* col_err, double* col_norm);
/* qg_weight_error against the dequantized unpacked codes [n][bpr*bs], decoded on the fly. */
QG_API(qg_weight_error_codes)
int qg_weight_error_codes(const float* w, const uint8_t* codes, const float* scales, const uint8_t* zero_points, int64_t n,
                          int64_t k, int bs, double* sums, double* col_err, double* col_norm);
/* hist[alphabet] = occurrences of each code; QG_EINVAL if a code is >= alphabet. */
QG_API(qg_histogram_u8) int qg_histogram_u8(const uint8_t* codes, int64_t count, int alphabet, double* hist);
/* qg_quantize_int whose clip search minimizes sum importance[col] * err^2 (importance: k floats). */
QG_API(qg_quantize_int_weighted)
int qg_quantize_int_weighted(const float* wT, int64_t n, int64_t k, int bits, int bs, int symmetric, int clip_search,
                             const float* importance, uint8_t* codes, float* scales, uint8_t* zero_points, int threads);

/* sum over rows of d_r^T H d_r (H k x k symmetric, d [rows][k], float64) in the order of sumQuadraticForms
 * (src/quantize/algorithms/linalg.ts), bit-identical; ws: qg_quadratic_forms_workspace_bytes(rows, k). */
QG_API(qg_quadratic_forms_workspace_bytes) int64_t qg_quadratic_forms_workspace_bytes(int64_t rows, int64_t k);
QG_API(qg_sum_quadratic_forms)
int qg_sum_quadratic_forms(const double* h, const double* d, int64_t rows, int64_t k, void* ws, int threads, double* out);

/* The sum per segment of seg_rows consecutive rows (a multiple of 8, or rows), each bit-identical to
 * qg_sum_quadratic_forms on that segment alone: out[rows / seg_rows]; one pass over H for all. */
QG_API(qg_sum_quadratic_forms_segments)
int qg_sum_quadratic_forms_segments(const double* h, const double* d, int64_t rows, int64_t k, int64_t seg_rows, void* ws, int threads,
                                    double* out);

/* ---- GPTQ (qg_gptq.c): codes, scales and zero points bit-identical to src/quantize/algorithms/gptq.ts ---- */
/* Bytes of workspace qg_gptq needs for an [n][k] weight. */
QG_API(qg_gptq_workspace_bytes) int64_t qg_gptq_workspace_bytes(int64_t n, int64_t k);
/* hessian: k*k float64 (E[x x^T] or any positive multiple). Returns -3 when the damped Hessian is not
 * positive definite after 8 tries (tenfold damping each). */
QG_API(qg_gptq)
int qg_gptq(const float* wT, int64_t n, int64_t k, const double* hessian, int bits, int bs, int symmetric, int clip_search,
            double damp_ratio, int act_order, int static_groups, int zero_dead, uint8_t* codes, float* scales,
            uint8_t* zero_points, void* ws, int threads);

/* ---- table formats as the quantize stage stores them (qg_tables.c), byte-identical to quantizeTableRef ---- */
/* Block scale: absmax / max|table| (NF4, FP4, bnb-FP4, FP8), the MX power of two, or absmax (codebook). */
enum { QG_TABLE_SCALE_DIV = 0, QG_TABLE_SCALE_MX = 1, QG_TABLE_SCALE_ABSMAX = 2 };
/* codes: unpacked [n][ceil(k/bs)*bs] (padding: the code nearest 0); scales [n][ceil(k/bs)]; table_len 1..256,
 * or 0 for E4M3 (FP8, encoded directly: the same codes as the scan over its 256 values). */
QG_API(qg_quantize_table)
int qg_quantize_table(const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len, int scale_mode,
                      uint8_t* codes, float* scales, int threads);
int qg_quantize_table_ref(const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len, int scale_mode,
                          uint8_t* codes, float* scales);
/* out[n][k] = table[code] * scale (dequantizeTable). */
QG_API(qg_dequantize_table)
int qg_dequantize_table(const uint8_t* codes, const float* scales, const float* table, int table_len, int64_t n, int64_t k,
                        int bs, float* out);

/* out [n][k] = w / its block's absmax (normalizeByBlock of codebook.ts; zero blocks stay 0). */
QG_API(qg_normalize_blocks) int qg_normalize_blocks(const float* wT, int64_t n, int64_t k, int bs, float* out);

/* out[i / 2] = codes[i] << 4 | codes[i + 1] (MatMulBnb4, high nibble first; odd tail padded with 0). */
QG_API(qg_pack_nibbles_hi) int qg_pack_nibbles_hi(const uint8_t* codes, int64_t count, uint8_t* out);

/* ---- low-rank correction, calibration statistics, element-wise helpers (qg_lowrank.c), bit-identical ---- */
QG_API(qg_sub_f32_to_f64) int qg_sub_f32_to_f64(const float* a, const float* b, int64_t count, double* out);
/* out [k][count]: out[c][j] = sum_r e[r][c] * v[j][r] (e [n][k], v [count][n]), r ascending, v zeros skipped;
 * ws: qg_lowrank_et_v_workspace_bytes(n, k, count). */
QG_API(qg_lowrank_et_v_workspace_bytes) int64_t qg_lowrank_et_v_workspace_bytes(int64_t n, int64_t k, int64_t count);
QG_API(qg_lowrank_et_v)
int qg_lowrank_et_v(const double* e, int64_t n, int64_t k, const double* v, int64_t count, double* out, void* ws, int threads);
/* y [count][n]: y_j = E H E^T v_j, H full k x k or (diag) its diagonal; applyG of lowrank.ts. */
QG_API(qg_lowrank_apply_g_workspace_bytes) int64_t qg_lowrank_apply_g_workspace_bytes(int64_t n, int64_t k, int64_t count);
QG_API(qg_lowrank_apply_g)
int qg_lowrank_apply_g(const double* e, int64_t n, int64_t k, const double* h, int diag, const double* v, int64_t count,
                       double* y, void* ws, int threads);
/* out [n][k] = E H (H full, symmetric), weightedRows of lowrank.ts. */
QG_API(qg_lowrank_weighted_rows)
int qg_lowrank_weighted_rows(const double* e, int64_t n, int64_t k, const double* h, double* out, int threads);
/* out [n][k] += (a [k][rank] . b [rank][n])^T, sums in float64, rounded once (effectiveWeightNK). */
QG_API(qg_add_low_rank_workspace_bytes) int64_t qg_add_low_rank_workspace_bytes(int64_t k, int64_t rank);
QG_API(qg_add_low_rank)
int qg_add_low_rank(float* out, const float* a, const float* b, int64_t n, int64_t k, int64_t rank, void* ws, int threads);
/* out[r][c] = in[r][c] * s[c] in float32 (in may be out). */
QG_API(qg_scale_columns_f32)
int qg_scale_columns_f32(const float* in, int64_t rows, int64_t cols, const float* s, float* out, int threads);
/* Adds |x| and x^2 of `rows` rows of c channels to sum_abs/sum_sq, and x x^T of the first gram_rows rows
 * to the lower triangle of g (c x c), in float64 (ActivationAccumulator.add). */
QG_API(qg_activation_stats)
int qg_activation_stats(const float* data, int64_t rows, int64_t c, double* sum_abs, double* sum_sq, double* g, int64_t gram_rows,
                        int threads);
/* x: values sorted ascending as float64 (-0 before +0); w, wx, wxx: count + 1 prefix sums of 1, x, x^2
 * (sortWeighted of codebook.ts with unit weights). QG_EINVAL if a value is not finite. */
QG_API(qg_sort_prefix_f32)
int qg_sort_prefix_f32(const float* values, int64_t count, double* x, double* w, double* wx, double* wxx);
/* out = {sum v^2, sum v^4, count of |v| > threshold (threshold < 0: 0)}, float64 in element order. */
QG_API(qg_weight_moments) int qg_weight_moments(const float* w, int64_t count, double threshold, double* out);
/* *out = sum over [n][k] row-major of h[col] (1 when h is NULL) * (w - deq)^2, float64 in element order. */
QG_API(qg_weighted_sq_error)
int qg_weighted_sq_error(const float* w, const float* deq, int64_t n, int64_t k, const double* h, double* out);
/* refineGroupScales of lowrank.ts on unpacked codes [n][bpr*bs] and scales [n][bpr], in place: the
 * least-squares scale per block under E[x^2] (mean_square, k), then `rounds` re-encodings; bit-identical. */
QG_API(qg_refine_scales)
int qg_refine_scales(const float* wT, int64_t n, int64_t k, int bits, int bs, const uint8_t* zero_points, const double* mean_square,
                     int rounds, uint8_t* codes, float* scales, int threads);
/* out[c][r] = in[r * in_stride + c] for c < cols. */
QG_API(qg_transpose_u8)
int qg_transpose_u8(const uint8_t* in, int64_t rows, int64_t cols, int64_t in_stride, uint8_t* out, int threads);

/* Host hook: run task(ctx, i0, i1) over [0, count) split into at most `threads` parts. The default
 * runs serially; the addon installs its thread pool. */
typedef void (*qg_task_fn)(void* ctx, int64_t i0, int64_t i1);
typedef void (*qg_parallel_fn)(qg_task_fn task, void* ctx, int64_t count, int64_t grain, int threads);
void qg_set_parallel(qg_parallel_fn fn);

#ifdef __cplusplus
}
#endif
#endif
