/* Public entry points: argument checks, CPU dispatch (filled once), and the split over threads. */
#include <string.h>
#include "qg_internal.h"

static qg_dispatch g_best, g_ref;
static int g_ready, g_force_ref, g_isa_cap = -1;

static void serial_parallel(qg_task_fn task, void* ctx, int64_t count, int64_t grain, int threads) {
  (void)grain; (void)threads;
  if (count > 0) task(ctx, 0, count);
}
static qg_parallel_fn g_parallel = serial_parallel;
void qg_set_parallel(qg_parallel_fn fn) { g_parallel = fn ? fn : serial_parallel; }
void qg_parallel_for(qg_task_fn task, void* ctx, int64_t count, int64_t grain, int threads) {
  g_parallel(task, ctx, count, grain, threads);
}

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(QG_SCALAR_ONLY)
static int cpu_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
static int cpu_has_avx512(void) { /* libgcc also checks that the OS saves the zmm/mask state */
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
}
#endif

static void init_dispatch(void) {
  if (g_ready) return;
  qg_fill_ref(&g_ref);
  qg_fill_ref(&g_best);
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(QG_SCALAR_ONLY)
  if (cpu_has_avx2_fma() && g_isa_cap != 0) {
    if (cpu_has_avx512() && g_isa_cap != 1) qg_fill_avx512(&g_best);
    else qg_fill_avx2(&g_best);
  }
#elif defined(__wasm_simd128__)
  qg_fill_simd128(&g_best);
#elif defined(__aarch64__) && !defined(QG_SCALAR_ONLY)
  qg_fill_neon(&g_best);
#endif
  g_ready = 1;
}

static const qg_dispatch* dispatch(void) {
  init_dispatch();
  return g_force_ref ? &g_ref : &g_best;
}

void qg_force_ref(int on) { g_force_ref = on; }
const qg_dispatch* qg_dispatch_table(void) { return dispatch(); }
void qg_limit_isa(int level) {
  g_isa_cap = level;
  g_ready = 0;
  init_dispatch();
}
const char* qg_isa(void) { return dispatch()->isa; }

static int is_int_bits(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }
static int is_lut(int fmt) {
  return fmt == QG_FMT_NF4 || fmt == QG_FMT_FP4 || fmt == QG_FMT_MXFP4 || fmt == QG_FMT_FP8 || fmt == QG_FMT_CODEBOOK;
}
static int valid_bs(int bs) { return bs >= 8 && bs <= QG_MAX_BLOCK && bs % 8 == 0; }

int qg_kernel_impl(int op, int fmt) {
  const qg_dispatch* d = dispatch();
  const int bits = fmt == QG_FMT_INT8 ? 8 : fmt == QG_FMT_INT4 ? 4 : fmt == QG_FMT_INT3 ? 3 : fmt == QG_FMT_INT2 ? 2 : 0;
  switch (op) {
    case QG_OP_QUANTIZE:
      if (bits) return d->quant_int != qg_quantize_int_ref ? 2 : 1;
      return is_lut(fmt) ? 1 : 0;
    case 5: /* QG_OP_GEMV with int8 activations (int4 only) */
      return fmt == QG_FMT_INT4 ? (d->gemv_int4_q8 != qg_gemv_int4_q8_ref ? 2 : 1) : 0;
    case 6: /* QG_OP_GEMM with int8 activations (int4 only) */
      return fmt == QG_FMT_INT4 ? (d->gemm_int4_q8 != qg_gemm_int4_q8_ref ? 2 : 1) : 0;
    case QG_OP_DEQUANTIZE:
    case QG_OP_PACK: return bits || is_lut(fmt) ? 1 : 0;
    case QG_OP_GEMV:
    case QG_OP_GEMM: {
      qg_gemm_fn f = bits ? (op == QG_OP_GEMV ? d->gemv_int[bits] : d->gemm_int[bits])
                          : (is_lut(fmt) ? d->gemm_lut[fmt] : NULL);
      if (fmt == QG_FMT_F32) return d->gemm_f32 != qg_gemm_f32_ref ? 2 : 1;
      if (!f) return 0;
      return (f == qg_gemm_int_ref || f == qg_gemm_lut_ref) ? 1 : 2;
    }
    default: return 0;
  }
}

int qg_struct_sizes(int32_t* out, int cap) {
  const int32_t s[] = {
      (int32_t)sizeof(qg_block_i8x32_f32_sym),  (int32_t)sizeof(qg_block_i8x32_f16_asym),
      (int32_t)sizeof(qg_block_i4x32_f16_sym),  (int32_t)sizeof(qg_block_i4x32_f16_asym),
      (int32_t)sizeof(qg_block_i4x32_f32_asym), (int32_t)sizeof(qg_block_i3x32_f16_sym),
      (int32_t)sizeof(qg_block_i3x32_f16_asym), (int32_t)sizeof(qg_block_i2x32_f16_sym),
      (int32_t)sizeof(qg_block_i2x32_f16_asym), (int32_t)sizeof(qg_block_i4x16_f16_sym),
      (int32_t)sizeof(qg_block_i4x64_f16_sym),  (int32_t)sizeof(qg_block_i4x128_f16_sym),
      (int32_t)sizeof(qg_block_i3x128_f16_sym), (int32_t)sizeof(qg_block_i2x128_f16_sym),
      (int32_t)sizeof(qg_block_nf4x32),         (int32_t)sizeof(qg_block_fp4x32),
      (int32_t)sizeof(qg_block_mxfp4),          (int32_t)sizeof(qg_block_fp8x32),
      (int32_t)sizeof(qg_block_cb4x32)};
  const int count = (int)(sizeof(s) / sizeof(s[0]));
  for (int i = 0; i < count && i < cap; i++) out[i] = s[i];
  return count;
}

int qg_format_field(int fmt, int field) {
  static const qg_format_info info[QG_FMT_COUNT] = QG_FORMAT_TABLE;
  if (fmt < 0 || fmt >= QG_FMT_COUNT) return QG_EINVAL;
  const qg_format_info* f = &info[fmt];
  switch (field) {
    case 0: return f->code_bits;
    case 1: return f->has_scale;
    case 2: return f->scale_bits;
    case 3: return f->has_zero_point;
    case 4: return f->fixed_block;
    default: return QG_EINVAL;
  }
}

/* ---------------- integer formats ---------------- */

typedef struct {
  const qg_dispatch* d;
  const float* wT;
  int64_t k;
  int bits, bs, sym, clip;
  uint8_t* codes;
  float* scales;
  uint8_t* zp;
} quant_int_ctx;

static void quant_int_task(void* p, int64_t r0, int64_t r1) {
  const quant_int_ctx* c = (const quant_int_ctx*)p;
  c->d->quant_int(c->wT, c->k, c->bits, c->bs, c->sym, c->clip, c->codes, c->scales, c->zp, r0, r1);
}

int qg_quantize_int(const float* wT, int64_t n, int64_t k, int bits, int bs, int symmetric, int clip_search,
                    uint8_t* codes, float* scales, uint8_t* zero_points, int threads) {
  if (!wT || !codes || !scales || !zero_points || n < 0 || k < 1 || !is_int_bits(bits) || !valid_bs(bs))
    return QG_EINVAL;
  quant_int_ctx c = {dispatch(), wT, k, bits, bs, symmetric != 0, clip_search != 0, codes, scales, zero_points};
  g_parallel(quant_int_task, &c, n, 1 + 65536 / k, threads);
  return QG_OK;
}

int qg_pack_bits(const uint8_t* codes, int64_t count, int bits, int64_t group_len, uint8_t* out) {
  if (!codes || !out || bits < 1 || bits > 8 || group_len < 1 || count % group_len) return QG_EINVAL;
  const int64_t groups = count / group_len, gbytes = (group_len * bits + 7) / 8;
  memset(out, 0, (size_t)(groups * gbytes));
  const unsigned mask = (1u << bits) - 1;
  for (int64_t g = 0; g < groups; g++) {
    uint8_t* o = out + g * gbytes;
    const uint8_t* c = codes + g * group_len;
    if (bits == 4) {
      int64_t i = 0;
      for (; i + 1 < group_len; i += 2) o[i >> 1] = (uint8_t)((c[i] & 15) | (c[i + 1] & 15) << 4);
      if (i < group_len) o[i >> 1] = (uint8_t)(c[i] & 15);
      continue;
    }
    if (bits == 8) { memcpy(o, c, (size_t)group_len); continue; }
    for (int64_t i = 0; i < group_len; i++) {
      const int64_t pos = i * bits;
      const unsigned v = (c[i] & mask) << (pos & 7);
      o[pos >> 3] |= (uint8_t)v;
      if ((pos & 7) + bits > 8) o[(pos >> 3) + 1] |= (uint8_t)(v >> 8);
    }
  }
  return QG_OK;
}

int qg_unpack_bits(const uint8_t* packed, int bits, int64_t group_len, int64_t groups, uint8_t* out) {
  if (!packed || !out || bits < 1 || bits > 8 || group_len < 1 || groups < 0) return QG_EINVAL;
  const int64_t gbytes = (group_len * bits + 7) / 8;
  for (int64_t g = 0; g < groups; g++)
    for (int64_t i = 0; i < group_len; i++) out[g * group_len + i] = (uint8_t)qg_get_code(packed + g * gbytes, i, bits);
  return QG_OK;
}

static void make_weight(qg_weight* w, const uint8_t* packed, const float* scales, const uint8_t* zp, const float* tbl,
                        int64_t n, int64_t k, int bits, int bs, int fmt) {
  w->packed = packed; w->scales = scales; w->zp = zp; w->table = tbl;
  w->n = n; w->k = k; w->bits = bits; w->bs = bs; w->fmt = fmt;
  w->bpr = (k + bs - 1) / bs;
  w->block_bytes = qg_block_code_bytes(bits, bs);
  w->row_bytes = w->bpr * w->block_bytes;
}

int qg_dequantize_int(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k,
                      int bits, int bs, float* out) {
  if (!packed || !scales || !out || n < 0 || k < 1 || !is_int_bits(bits) || !valid_bs(bs)) return QG_EINVAL;
  qg_weight w;
  make_weight(&w, packed, scales, zero_points, NULL, n, k, bits, bs, 0);
  const float mid = (float)(1 << (bits - 1));
  for (int64_t row = 0; row < n; row++)
    for (int64_t i = 0; i < k; i++) {
      const int64_t b = i / bs, bi = row * w.bpr + b;
      const unsigned c = qg_get_code(packed + row * w.row_bytes + b * w.block_bytes, i % bs, bits);
      out[row * k + i] = ((float)c - (zero_points ? (float)zero_points[bi] : mid)) * scales[bi];
    }
  return QG_OK;
}

typedef struct {
  qg_gemm_fn fn;
  const qg_weight* w;
  const float* x;
  int64_t m;
  float* y;
} gemm_ctx;

static void gemm_task(void* p, int64_t n0, int64_t n1) {
  const gemm_ctx* c = (const gemm_ctx*)p;
  for (int64_t m0 = 0; m0 < c->m; m0 += QG_GEMM_TILE_M) {
    const int64_t mt = c->m - m0 < QG_GEMM_TILE_M ? c->m - m0 : QG_GEMM_TILE_M;
    c->fn(c->w, c->x + m0 * c->w->k, mt, c->y + m0 * c->w->n, n0, n1);
  }
}

static int run_gemm(qg_gemm_fn fn, const qg_weight* w, const float* x, int64_t m, float* y, int threads) {
  if (!fn) return QG_ENOKERNEL;
  gemm_ctx c = {fn, w, x, m, y};
  /* Rows per task: enough work to amortize a wake-up, multiple of 8 for the row-blocked kernels. */
  int64_t grain = (1 << 16) / (w->k * (m < 8 ? m : 8)) + 1;
  grain = (grain + 7) & ~(int64_t)7;
  g_parallel(gemm_task, &c, w->n, grain, threads);
  return QG_OK;
}

int qg_gemm_int(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bits,
                int bs, const float* x, int64_t m, float* y, int threads) {
  if (!packed || !scales || !x || !y || n < 0 || k < 1 || m < 1 || !is_int_bits(bits) || !valid_bs(bs)) return QG_EINVAL;
  qg_weight w;
  make_weight(&w, packed, scales, zero_points, NULL, n, k, bits, bs, 0);
  const qg_dispatch* d = dispatch();
  return run_gemm(m == 1 ? d->gemv_int[bits] : d->gemm_int[bits], &w, x, m, y, threads);
}

int64_t qg_gemv_q8_workspace_bytes(int64_t k, int bs) {
  if (k < 1 || bs < 32 || bs % 32) return 0;
  const int64_t bpr = (k + bs - 1) / bs, chunks = bpr * (bs / 32), quads = chunks / 4;
  return chunks * 32 + chunks * 4 + bpr * 12 + quads * (128 + 64) + 128;
}

typedef struct {
  qg_gemv_q8_fn fn;
  const qg_weight* w;
  const qg_q8_act* a;
  float* y;
} q8_ctx;

static void q8_task(void* p, int64_t n0, int64_t n1) {
  const q8_ctx* c = (const q8_ctx*)p;
  c->fn(c->w, c->a, c->y, n0, n1);
}

/* Quantize one activation row per weight block (dispatched: the SIMD quantizers are bit-identical to the
 * reference), then lay it out per chunk and in quads for the register-tiled kernels, all in ws
 * (qg_gemv_q8_workspace_bytes(k, bs) bytes). */
static void quantize_act_row(const float* x, int64_t k, int bs, int64_t bpr, void* ws, qg_q8_act* act) {
  const int64_t cpb = bs / 32, chunks = bpr * cpb, quads = chunks / 4;
  int8_t* xq = (int8_t*)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  float* dx = (float*)(xq + chunks * 32);
  float* db = dx + chunks;
  int32_t* sq = (int32_t*)(db + bpr);
  float* dsb = (float*)(sq + bpr);
  int8_t* xq4 = (int8_t*)(((uintptr_t)(dsb + bpr) + 63) & ~(uintptr_t)63);
  float* dxl = (float*)(xq4 + quads * 128);
  dispatch()->quant_act_q8(x, k, bpr, bs, xq, db, sq);
  for (int64_t b = 0; b < bpr; b++) {
    dsb[b] = db[b] * (float)sq[b];
    for (int64_t c = 0; c < cpb; c++) dx[b * cpb + c] = db[b];
  }
  for (int64_t j = 0; j < quads * 4; j++) { /* the quad copy for the register-tiled kernels */
    const int64_t q = j >> 2, c = j & 3;
    memcpy(xq4 + q * 128 + c * 16, xq + j * 32, 16);
    memcpy(xq4 + q * 128 + 64 + c * 16, xq + j * 32 + 16, 16);
    for (int l = 0; l < 4; l++) dxl[q * 16 + c * 4 + l] = dx[j];
  }
  act->xq4 = xq4;
  act->dxl = dxl;
  act->dsb = dsb;
  act->xq = xq;
  act->dx = dx;
  act->db = db;
  act->sq = sq;
}

int qg_gemv_int4_q8(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bs,
                    const float* x, float* y, void* ws, int threads) {
  if (!packed || !scales || !x || !y || !ws || n < 0 || k < 1 || bs < 32 || bs % 32 || bs > QG_MAX_BLOCK) return QG_EINVAL;
  qg_weight w;
  make_weight(&w, packed, scales, zero_points, NULL, n, k, 4, bs, 0);
  qg_q8_act a;
  quantize_act_row(x, k, bs, w.bpr, ws, &a);
  q8_ctx c = {dispatch()->gemv_int4_q8, &w, &a, y};
  g_parallel(q8_task, &c, n, 64, threads);
  return QG_OK;
}

/* ---- the row-interleaved layout (qg_prepack_int4_q8) ---- */

static int64_t il_row_bytes(int64_t k, int bs) { return (k + bs - 1) / bs * (bs / 2); }

int64_t qg_prepack_int4_q8_bytes(int64_t n, int64_t k, int bs) {
  if (g_force_ref || n < 1 || k < 1 || (bs != 32 && bs != 64 && bs != 128 && bs != 256) || !dispatch()->gemv_int4_q8_il) return 0;
  const int64_t rb = il_row_bytes(k, bs);
  if (rb % 64) return 0; /* a partial quad at the row's end: the plain layout's scalar tail */
  return (n + 3) / 4 * 4 * rb;
}

int qg_prepack_int4_q8(const uint8_t* packed, int64_t n, int64_t k, int bs, uint8_t* out) {
  const int64_t bytes = qg_prepack_int4_q8_bytes(n, k, bs);
  if (!packed || !out || bytes <= 0) return bytes == 0 && packed && out ? QG_ENOKERNEL : QG_EINVAL;
  const int64_t rb = il_row_bytes(k, bs), quads = rb / 64;
  for (int64_t t = 0; t < (n + 3) / 4; t++)
    for (int64_t q = 0; q < quads; q++)
      for (int r = 0; r < 4; r++) { /* rows past n repeat the last one (their sums are dropped) */
        const int64_t row = 4 * t + r < n ? 4 * t + r : n - 1;
        memcpy(out + 4 * t * rb + 256 * q + 64 * r, packed + row * rb + 64 * q, 64);
      }
  return QG_OK;
}

typedef struct {
  qg_gemv_q8_fn fn;
  const qg_weight* w;
  const qg_q8_act* a;
  float* y;
  int64_t n;
} q8_il_ctx;

static void q8_il_task(void* p, int64_t t0, int64_t t1) { /* tiles of 4 rows */
  const q8_il_ctx* c = (const q8_il_ctx*)p;
  c->fn(c->w, c->a, c->y, 4 * t0, 4 * t1 < c->n ? 4 * t1 : c->n);
}

int qg_gemv_int4_q8_prepacked(const uint8_t* prepacked, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k,
                              int bs, const float* x, float* y, void* ws, int threads) {
  if (!prepacked || !scales || !x || !y || !ws || n < 1 || k < 1) return QG_EINVAL;
  if (qg_prepack_int4_q8_bytes(n, k, bs) <= 0) return QG_ENOKERNEL;
  qg_weight w;
  make_weight(&w, prepacked, scales, zero_points, NULL, n, k, 4, bs, 0);
  qg_q8_act a;
  quantize_act_row(x, k, bs, w.bpr, ws, &a);
  q8_il_ctx c = {dispatch()->gemv_int4_q8_il, &w, &a, y, n};
  g_parallel(q8_il_task, &c, (n + 3) / 4, 16, threads);
  return QG_OK;
}

int64_t qg_gemm_q8_workspace_bytes(int64_t m, int64_t k, int bs) {
  const int64_t one = qg_gemv_q8_workspace_bytes(k, bs);
  if (one <= 0 || m < 1) return 0;
  const int64_t rows = m < QG_Q8_MAX_M ? m : QG_Q8_MAX_M;
  return rows * ((one + 63) & ~(int64_t)63);
}

typedef struct {
  qg_gemm_q8_fn fn;
  const qg_weight* w;
  const qg_q8_act* acts;
  int64_t m;
  float* y;
} gemm_q8_ctx;

static void gemm_q8_task(void* p, int64_t n0, int64_t n1) {
  const gemm_q8_ctx* c = (const gemm_q8_ctx*)p;
  c->fn(c->w, c->acts, c->m, c->y, n0, n1);
}

int qg_gemm_int4_q8(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bs,
                    const float* x, int64_t m, float* y, void* ws, int threads) {
  if (!packed || !scales || !x || !y || !ws || n < 0 || k < 1 || m < 1 || bs < 32 || bs % 32 || bs > QG_MAX_BLOCK)
    return QG_EINVAL;
  qg_weight w;
  make_weight(&w, packed, scales, zero_points, NULL, n, k, 4, bs, 0);
  const int64_t stride = (qg_gemv_q8_workspace_bytes(k, bs) + 63) & ~(int64_t)63;
  qg_q8_act acts[QG_Q8_MAX_M];
  for (int64_t m0 = 0; m0 < m; m0 += QG_Q8_MAX_M) {
    const int64_t mt = m - m0 < QG_Q8_MAX_M ? m - m0 : QG_Q8_MAX_M;
    for (int64_t i = 0; i < mt; i++) quantize_act_row(x + (m0 + i) * k, k, bs, w.bpr, (uint8_t*)ws + i * stride, &acts[i]);
    gemm_q8_ctx c = {dispatch()->gemm_int4_q8, &w, acts, mt, y + m0 * n};
    /* Rows per task: multiples of 4 (the kernel's weight tile), enough work to amortize a wake-up. */
    int64_t grain = (1 << 17) / (k * mt) + 1;
    grain = (grain + 3) & ~(int64_t)3;
    g_parallel(gemm_q8_task, &c, n, grain, threads);
  }
  return QG_OK;
}

/* ---------------- table formats ---------------- */

typedef struct {
  int fmt;
  const float* wT;
  int64_t k;
  int bs;
  const float* table;
  int table_len;
  uint8_t* packed;
  float* scales;
} quant_lut_ctx;

static void quant_lut_task(void* p, int64_t r0, int64_t r1) {
  const quant_lut_ctx* c = (const quant_lut_ctx*)p;
  qg_quantize_lut_ref(c->fmt, c->wT, c->k, c->bs, c->table, c->table_len, c->packed, c->scales, r0, r1);
}

static int lut_args_ok(int fmt, int bs, const float* table, int table_len) {
  if (!is_lut(fmt) || !valid_bs(bs)) return 0;
  if (fmt == QG_FMT_MXFP4 && bs != 32) return 0;
  if (fmt == QG_FMT_CODEBOOK && (!table || table_len < 1 || table_len > 16)) return 0;
  return 1;
}

int qg_quantize_lut(int fmt, const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len,
                    uint8_t* packed, float* scales, int threads) {
  if (!wT || !packed || n < 0 || k < 1 || !lut_args_ok(fmt, bs, table, table_len)) return QG_EINVAL;
  if (!scales && fmt != QG_FMT_CODEBOOK) return QG_EINVAL;
  quant_lut_ctx c = {fmt, wT, k, bs, table, table_len, packed, scales};
  g_parallel(quant_lut_task, &c, n, 1 + 16384 / k, threads);
  return QG_OK;
}

int qg_dequantize_lut(int fmt, const uint8_t* packed, const float* scales, const float* table, int64_t n, int64_t k,
                      int bs, float* out) {
  if (!packed || !out || n < 0 || k < 1 || !lut_args_ok(fmt, bs, table, 16)) return QG_EINVAL;
  if (!scales && fmt != QG_FMT_CODEBOOK) return QG_EINVAL;
  qg_weight w;
  make_weight(&w, packed, fmt == QG_FMT_CODEBOOK ? NULL : scales, NULL, table, n, k, fmt == QG_FMT_FP8 ? 8 : 4, bs, fmt);
  const float* lut = fmt == QG_FMT_NF4 ? qg_nf4_table : fmt == QG_FMT_CODEBOOK ? table : qg_e2m1_table;
  for (int64_t row = 0; row < n; row++)
    for (int64_t i = 0; i < k; i++) {
      const int64_t b = i / bs, bi = row * w.bpr + b;
      const uint8_t* blk = packed + row * w.row_bytes + b * w.block_bytes;
      const float v = fmt == QG_FMT_FP8 ? qg_e4m3_decode(blk[i % bs]) : lut[qg_get_code(blk, i % bs, 4)];
      out[row * k + i] = w.scales ? v * w.scales[bi] : v;
    }
  return QG_OK;
}

int qg_gemm_lut(int fmt, const uint8_t* packed, const float* scales, const float* table, int64_t n, int64_t k, int bs,
                const float* x, int64_t m, float* y, int threads) {
  if (!packed || !x || !y || n < 0 || k < 1 || m < 1 || !lut_args_ok(fmt, bs, table, 16)) return QG_EINVAL;
  if (!scales && fmt != QG_FMT_CODEBOOK) return QG_EINVAL;
  qg_weight w;
  make_weight(&w, packed, fmt == QG_FMT_CODEBOOK ? NULL : scales, NULL, table, n, k, fmt == QG_FMT_FP8 ? 8 : 4, bs, fmt);
  return run_gemm(dispatch()->gemm_lut[fmt], &w, x, m, y, threads);
}

int qg_codebook_fit(const float* w, int64_t count, int entries, int iters, float* table_out) {
  if (!w || !table_out || count < 1 || entries < 1 || entries > 16 || iters < 0) return QG_EINVAL;
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < count; i++) { lo = w[i] < lo ? w[i] : lo; hi = w[i] > hi ? w[i] : hi; }
  /* Start from uniform levels, then Lloyd iterations (sorted levels: nearest = between midpoints). */
  for (int j = 0; j < entries; j++) table_out[j] = entries == 1 ? 0.5f * (lo + hi) : lo + (hi - lo) * (float)j / (float)(entries - 1);
  double sum[16], cnt[16];
  for (int it = 0; it < iters; it++) {
    for (int j = 0; j < entries; j++) sum[j] = cnt[j] = 0;
    for (int64_t i = 0; i < count; i++) {
      int j = 0;
      while (j + 1 < entries && w[i] > 0.5f * (table_out[j] + table_out[j + 1])) j++;
      sum[j] += w[i];
      cnt[j] += 1;
    }
    for (int j = 0; j < entries; j++) if (cnt[j] > 0) table_out[j] = (float)(sum[j] / cnt[j]);
  }
  for (int j = entries; j < 16; j++) table_out[j] = table_out[entries - 1];
  return QG_OK;
}

/* ---------------- float32 and helpers ---------------- */

typedef struct {
  qg_gemm_f32_fn fn;
  const float* w;
  int64_t n, k;
  const float* x;
  int64_t m;
  float* y;
} f32_ctx;

static void f32_task(void* p, int64_t n0, int64_t n1) {
  const f32_ctx* c = (const f32_ctx*)p;
  c->fn(c->w, c->n, c->k, c->x, c->m, c->y, n0, n1);
}

int qg_gemm_f32(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int threads) {
  if (!w || !x || !y || n < 0 || k < 1 || m < 1) return QG_EINVAL;
  f32_ctx c = {dispatch()->gemm_f32, w, n, k, x, m, y};
  g_parallel(f32_task, &c, n, 1 + 16384 / k, threads);
  return QG_OK;
}

static uint16_t f32_to_f16_one(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u : 0));
  if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds past 65504 */
  if (ax < 0x38800000u) { /* half subnormal: value / 2^-24, round half to even */
    float a;
    memcpy(&a, &ax, 4);
    volatile float big = 8388608.0f;
    const float s = a * 16777216.0f;
    return (uint16_t)(sign | (uint32_t)((s + big) - big));
  }
  const uint32_t r = ax + 0xFFFu + ((ax >> 13) & 1u);
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

int qg_f32_to_f16(const float* in, int64_t count, uint16_t* out) {
  if (!in || !out || count < 0) return QG_EINVAL;
  for (int64_t i = 0; i < count; i++) out[i] = f32_to_f16_one(in[i]);
  return QG_OK;
}

int qg_f16_to_f32(const uint16_t* in, int64_t count, float* out) {
  if (!in || !out || count < 0) return QG_EINVAL;
  for (int64_t i = 0; i < count; i++) {
    const uint32_t h = in[i], sign = (h & 0x8000u) << 16, e = (h >> 10) & 31, mant = h & 1023;
    uint32_t b;
    if (e == 0) {
      float v = (float)mant * 5.9604644775390625e-8f; /* 2^-24 */
      memcpy(&b, &v, 4);
      b |= sign;
    } else if (e == 31) b = sign | 0x7F800000u | (mant << 13);
    else b = sign | ((e + 112) << 23) | (mant << 13);
    memcpy(&out[i], &b, 4);
  }
  return QG_OK;
}

typedef struct {
  const float* buf;
  float part[64];
  int64_t chunk;
} sum_ctx;

static void sum_task(void* p, int64_t i0, int64_t i1) {
  sum_ctx* c = (sum_ctx*)p;
  const qg_dispatch* d = dispatch();
  for (int64_t i = i0; i < i1; i++) c->part[i] = d->read_sum(c->buf + i * c->chunk, c->chunk);
}

float qg_read_sum(const float* buf, int64_t count, int threads) {
  if (!buf || count < 0) return 0.0f;
  sum_ctx c;
  c.buf = buf;
  c.chunk = count / 64;
  for (int i = 0; i < 64; i++) c.part[i] = 0;
  g_parallel(sum_task, &c, 64, 1, threads);
  float s = dispatch()->read_sum(buf + 64 * c.chunk, count - 64 * c.chunk);
  for (int i = 0; i < 64; i++) s += c.part[i];
  return s;
}
