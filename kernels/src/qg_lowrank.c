/* The float64 passes of the low-rank error correction (src/quantize/algorithms/lowrank.ts), the
 * calibration Gram accumulation (src/calibrate/index.ts) and the element-wise helpers of the quantize
 * and emit stages, bit-identical to their TypeScript references: every sum keeps the reference's order
 * (one accumulator per output, terms in the same sequence, multiply then add), and the SIMD comes from
 * computing many such sums side by side. Compile with -ffp-contract=off. */
#include <string.h>
#include "qg_internal.h"


/* ---------------- out[i] = a[i] - b[i] in float64 ---------------- */

int qg_sub_f32_to_f64(const float* a, const float* b, int64_t count, double* out) {
  if (!a || !b || !out || count < 0) return QG_EINVAL;
  for (int64_t i = 0; i < count; i++) out[i] = (double)a[i] - (double)b[i];
  return QG_OK;
}

/* ---------------- the three products of applyG, as one register-blocked kernel ----------------
 * out[x][j] = sum_q A(x, q) B[q][j] for x < rows, j < cp (cp a multiple of 8), q ascending from 0, one
 * multiply then one add per term: A(x, q) = a[x * sx + q * sq]. With `mask`, a term whose B is 0 adds
 * nothing (the reference skips v[r] == 0); elsewhere B's zeros add +0, which changes no sum that began
 * at +0. Four rows by eight columns per step, each (x, j) its own accumulator. */

typedef double lr_v2 __attribute__((vector_size(16)));
typedef long long lr_i2 __attribute__((vector_size(16)));

#define LR_BODY(V, VI, LANES)                                                                                             \
  {                                                                                                                   \
    enum { NV = 8 / LANES };                                                                                          \
    for (int64_t x0 = x_begin; x0 < x_end; x0 += 4) {                                                                 \
      const int nx = (int)(x_end - x0 < 4 ? x_end - x0 : 4);                                                          \
      for (int64_t j0 = 0; j0 < cp; j0 += 8) {                                                                        \
        V acc[4][NV];                                                                                                 \
        for (int x = 0; x < 4; x++)                                                                                   \
          for (int v = 0; v < NV; v++) acc[x][v] = (V){0};                                                            \
        const double* ax[4];                                                                                          \
        for (int x = 0; x < 4; x++) ax[x] = a + (x0 + (x < nx ? x : 0)) * sx;                                         \
        for (int64_t q = 0; q < depth; q++) {                                                                         \
          V bv[NV];                                                                                                   \
          for (int v = 0; v < NV; v++) memcpy(&bv[v], b + q * cp + j0 + v * LANES, sizeof(V));                        \
          if (mask) {                                                                                                 \
            for (int x = 0; x < 4; x++) {                                                                             \
              const V av = ax[x][q * sq] - (V){0};                                                                    \
              for (int v = 0; v < NV; v++) {                                                                          \
                const V t = av * bv[v];                                                                               \
                acc[x][v] = acc[x][v] + (V)((VI)t & (VI)(bv[v] != (V){0}));                                            \
              }                                                                                                       \
            }                                                                                                         \
          } else {                                                                                                    \
            const V a0 = ax[0][q * sq] - (V){0}, a1 = ax[1][q * sq] - (V){0}, a2 = ax[2][q * sq] - (V){0},            \
                    a3 = ax[3][q * sq] - (V){0};                                                                      \
            for (int v = 0; v < NV; v++) {                                                                            \
              acc[0][v] = acc[0][v] + a0 * bv[v];                                                                     \
              acc[1][v] = acc[1][v] + a1 * bv[v];                                                                     \
              acc[2][v] = acc[2][v] + a2 * bv[v];                                                                     \
              acc[3][v] = acc[3][v] + a3 * bv[v];                                                                     \
            }                                                                                                         \
          }                                                                                                           \
        }                                                                                                             \
        for (int x = 0; x < nx; x++)                                                                                  \
          for (int v = 0; v < NV; v++) memcpy(out + (x0 + x) * cp + j0 + v * LANES, &acc[x][v], sizeof(V));          \
      }                                                                                                               \
    }                                                                                                                 \
  }

static void lr_gemm2(const double* a, int64_t sx, int64_t sq, const double* b, int64_t cp, int64_t depth, int mask,
                     int64_t x_begin, int64_t x_end, double* out) LR_BODY(lr_v2, lr_i2, 2)

#if defined(__x86_64__) && !defined(QG_SCALAR_ONLY)
typedef double lr_v4 __attribute__((vector_size(32)));
typedef long long lr_i4 __attribute__((vector_size(32)));
__attribute__((target("avx2"))) static void lr_gemm4(const double* a, int64_t sx, int64_t sq, const double* b, int64_t cp,
                                                     int64_t depth, int mask, int64_t x_begin, int64_t x_end, double* out)
    LR_BODY(lr_v4, lr_i4, 4)
typedef double lr_v8 __attribute__((vector_size(64)));
typedef long long lr_i8 __attribute__((vector_size(64)));
__attribute__((target("avx512f"))) static void lr_gemm8(const double* a, int64_t sx, int64_t sq, const double* b, int64_t cp,
                                                        int64_t depth, int mask, int64_t x_begin, int64_t x_end, double* out)
    LR_BODY(lr_v8, lr_i8, 8)
#endif

typedef struct {
  const double* a;
  int64_t sx, sq;
  const double* b;
  int64_t cp, depth;
  int mask, wide;
  double* out;
} lr_gemm_ctx;

static void lr_gemm_task(void* p, int64_t t0, int64_t t1) {
  const lr_gemm_ctx* c = (const lr_gemm_ctx*)p;
  const int64_t x0 = t0 * 4, x1 = t1 * 4;
#if defined(__x86_64__) && !defined(QG_SCALAR_ONLY)
  if (c->wide) {
    (c->wide == 2 ? lr_gemm8 : lr_gemm4)(c->a, c->sx, c->sq, c->b, c->cp, c->depth, c->mask, x0, x1, c->out);
    return;
  }
#endif
  lr_gemm2(c->a, c->sx, c->sq, c->b, c->cp, c->depth, c->mask, x0, x1, c->out);
}

/* rows must be a multiple of 4 in the task split: the last quad is clipped through x_end. */
static void lr_gemm(const double* a, int64_t sx, int64_t sq, const double* b, int64_t cp, int64_t depth, int mask, int64_t rows,
                    double* out, int threads) {
  const char* isa = qg_dispatch_table()->isa; /* "avx512": 8 lanes, "avx2": 4, else 2 */
  lr_gemm_ctx c = {a, sx, sq, b, cp, depth, mask, isa[0] != 'a' ? 0 : isa[3] == '5' ? 2 : 1, out};
  const int64_t quads = (rows + 3) / 4;
  if (rows % 4 == 0) {
    qg_parallel_for(lr_gemm_task, &c, quads, 1, threads);
    return;
  }
  if (quads > 1) qg_parallel_for(lr_gemm_task, &c, quads - 1, 1, threads);
#if defined(__x86_64__) && !defined(QG_SCALAR_ONLY)
  if (c.wide) {
    (c.wide == 2 ? lr_gemm8 : lr_gemm4)(a, sx, sq, b, cp, depth, mask, (quads - 1) * 4, rows, out);
    return;
  }
#endif
  lr_gemm2(a, sx, sq, b, cp, depth, mask, (quads - 1) * 4, rows, out);
}

static int64_t pad8(int64_t count) { return (count + 7) / 8 * 8; }

/* ---------------- out[c][j] = sum_r e[r][c] v_j[r] (r ascending, zero v skipped) ---------------- */

int64_t qg_lowrank_et_v_workspace_bytes(int64_t n, int64_t k, int64_t count) {
  if (n < 0 || k < 1 || count < 0) return -1;
  return (n * pad8(count) + k * pad8(count) + 1) * (int64_t)sizeof(double);
}

/* vt: [n][cp] scratch, tt: [k][cp] result (padding columns zero). */
static void et_v_padded(const double* e, int64_t n, int64_t k, const double* v, int64_t count, double* vt, double* tt, int threads) {
  const int64_t cp = pad8(count);
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < cp; j++) vt[r * cp + j] = j < count ? v[j * n + r] : 0.0;
  lr_gemm(e, 1, k, vt, cp, n, 1, k, tt, threads);
}

int qg_lowrank_et_v(const double* e, int64_t n, int64_t k, const double* v, int64_t count, double* out, void* ws, int threads) {
  if (!e || !v || !out || !ws || n < 0 || k < 1 || count < 0) return QG_EINVAL;
  const int64_t cp = pad8(count);
  double* vt = (double*)ws;
  double* tt = vt + n * cp;
  et_v_padded(e, n, k, v, count, vt, tt, threads);
  for (int64_t c = 0; c < k; c++)
    for (int64_t j = 0; j < count; j++) out[c * count + j] = tt[c * cp + j];
  return QG_OK;
}

/* ---------------- y_j = E H E^T v_j (applyG of lowrank.ts for every vector) ---------------- */

int64_t qg_lowrank_apply_g_workspace_bytes(int64_t n, int64_t k, int64_t count) {
  if (n < 0 || k < 1 || count < 0) return -1;
  const int64_t cp = pad8(count);
  return (n * cp + 2 * k * cp + n * cp + 1) * (int64_t)sizeof(double);
}

int qg_lowrank_apply_g(const double* e, int64_t n, int64_t k, const double* h, int diag, const double* v, int64_t count,
                       double* y, void* ws, int threads) {
  if (!e || !h || !v || !y || !ws || n < 0 || k < 1 || count < 0) return QG_EINVAL;
  const int64_t cp = pad8(count);
  double* vt = (double*)ws;
  double* tt = vt + n * cp;
  double* ut = tt + k * cp;
  double* yt = ut + k * cp;
  et_v_padded(e, n, k, v, count, vt, tt, threads); /* t = E^T v */
  if (diag) {
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < cp; j++) ut[i * cp + j] = h[i] * tt[i * cp + j]; /* u = diag(h) t */
  } else {
    lr_gemm(h, k, 1, tt, cp, k, 0, k, ut, threads); /* u = H t */
  }
  lr_gemm(e, k, 1, ut, cp, k, 0, n, yt, threads); /* y = E u */
  for (int64_t j = 0; j < count; j++)
    for (int64_t r = 0; r < n; r++) y[j * n + r] = yt[r * cp + j];
  return QG_OK;
}

/* ---------------- E H for a full H (weightedRows of lowrank.ts) ---------------- */

typedef struct {
  const double* e;
  int64_t k;
  const double* h;
  double* out;
} wr_ctx;

static void wr_task(void* p, int64_t r0, int64_t r1) {
  const wr_ctx* c = (const wr_ctx*)p;
  const int64_t k = c->k;
  for (int64_t r = r0; r < r1; r++) {
    double* o = c->out + r * k;
    memset(o, 0, (size_t)k * sizeof(double));
    for (int64_t q = 0; q < k; q++) {
      const double ec = c->e[r * k + q];
      if (ec == 0.0) continue;
      const double* hr = c->h + q * k;
      for (int64_t j = 0; j < k; j++) o[j] += ec * hr[j];
    }
  }
}

int qg_lowrank_weighted_rows(const double* e, int64_t n, int64_t k, const double* h, double* out, int threads) {
  if (!e || !h || !out || n < 0 || k < 1) return QG_EINVAL;
  wr_ctx c = {e, k, h, out};
  qg_parallel_for(wr_task, &c, n, 1, threads);
  return QG_OK;
}

/* ---------------- out[row][col] = f32(out + sum_j a[col][j] b[j][row]) (effectiveWeightNK) ---------------- */

typedef struct {
  float* out;
  const double* at; /* [r][k] */
  const float* b;
  int64_t n, k, r;
} lr_add_ctx;

static void lr_add_task(void* p, int64_t r0, int64_t r1) {
  const lr_add_ctx* c = (const lr_add_ctx*)p;
  const int64_t n = c->n, k = c->k, rank = c->r;
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t c0 = 0; c0 < k; c0 += 256) {
      const int64_t len = k - c0 < 256 ? k - c0 : 256;
      double acc[256];
      for (int64_t i = 0; i < len; i++) acc[i] = 0.0;
      for (int64_t j = 0; j < rank; j++) {
        const double bj = (double)c->b[j * n + row];
        const double* a = c->at + j * k + c0;
        for (int64_t i = 0; i < len; i++) acc[i] += a[i] * bj;
      }
      float* o = c->out + row * k + c0;
      for (int64_t i = 0; i < len; i++) o[i] = (float)((double)o[i] + acc[i]);
    }
  }
}

int64_t qg_add_low_rank_workspace_bytes(int64_t k, int64_t rank) {
  if (k < 0 || rank < 0) return -1;
  return (k * rank > 0 ? k * rank : 1) * (int64_t)sizeof(double);
}

int qg_add_low_rank(float* out, const float* a, const float* b, int64_t n, int64_t k, int64_t rank, void* ws, int threads) {
  if (!out || !a || !b || !ws || n < 0 || k < 0 || rank < 0) return QG_EINVAL;
  double* at = (double*)ws;
  for (int64_t col = 0; col < k; col++)
    for (int64_t j = 0; j < rank; j++) at[j * k + col] = (double)a[col * rank + j];
  lr_add_ctx c = {out, at, b, n, k, rank};
  qg_parallel_for(lr_add_task, &c, n, 1 + 65536 / (k * (rank > 0 ? rank : 1) + 1), threads);
  return QG_OK;
}

/* ---------------- out[row][col] = f32(in[row][col] * s[col]) ---------------- */

typedef struct {
  const float* in;
  const float* s;
  float* out;
  int64_t cols;
} sc_ctx;

static void sc_task(void* p, int64_t r0, int64_t r1) {
  const sc_ctx* c = (const sc_ctx*)p;
  for (int64_t r = r0; r < r1; r++) {
    const float* i = c->in + r * c->cols;
    float* o = c->out + r * c->cols;
    for (int64_t q = 0; q < c->cols; q++) o[q] = i[q] * c->s[q];
  }
}

int qg_scale_columns_f32(const float* in, int64_t rows, int64_t cols, const float* s, float* out, int threads) {
  if (!in || !s || !out || rows < 0 || cols < 0) return QG_EINVAL;
  sc_ctx c = {in, s, out, cols};
  qg_parallel_for(sc_task, &c, rows, 1 + 65536 / (cols + 1), threads);
  return QG_OK;
}

/* ---------------- calibration: per-channel sums and the lower triangle of sum x x^T ---------------- */

typedef struct {
  const float* data;
  int64_t c, gram_rows, tiles;
  double* g;
} gram_ctx;

#define GRAM_TILE 16

static void gram_rows_range(const gram_ctx* x, int64_t i0, int64_t i1) {
  const int64_t c = x->c;
  for (int64_t r = 0; r < x->gram_rows; r++) {
    const float* row = x->data + r * c;
    for (int64_t i = i0; i < i1; i++) {
      const double xi = (double)row[i];
      if (xi == 0.0) continue;
      double* g = x->g + i * c;
      for (int64_t j = 0; j <= i; j++) g[j] += xi * (double)row[j];
    }
  }
}

/* Task p takes tile p and its mirror tiles - 1 - p, so every part does about the same work. */
static void gram_task(void* p, int64_t t0, int64_t t1) {
  const gram_ctx* x = (const gram_ctx*)p;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t a = t, b = x->tiles - 1 - t;
    const int64_t a1 = (a + 1) * GRAM_TILE < x->c ? (a + 1) * GRAM_TILE : x->c;
    gram_rows_range(x, a * GRAM_TILE, a1);
    if (b != a) {
      const int64_t b1 = (b + 1) * GRAM_TILE < x->c ? (b + 1) * GRAM_TILE : x->c;
      gram_rows_range(x, b * GRAM_TILE, b1);
    }
  }
}

int qg_activation_stats(const float* data, int64_t rows, int64_t c, double* sum_abs, double* sum_sq, double* g, int64_t gram_rows,
                        int threads) {
  if (!data || !sum_abs || !sum_sq || rows < 0 || c < 1 || gram_rows < 0 || gram_rows > rows || (gram_rows > 0 && !g))
    return QG_EINVAL;
  for (int64_t r = 0; r < rows; r++) {
    const float* row = data + r * c;
    for (int64_t j = 0; j < c; j++) {
      const double v = (double)row[j];
      sum_abs[j] += __builtin_fabs(v);
      sum_sq[j] += v * v;
    }
  }
  if (gram_rows > 0) {
    const int64_t tiles = (c + GRAM_TILE - 1) / GRAM_TILE;
    gram_ctx x = {data, c, gram_rows, tiles, g};
    qg_parallel_for(gram_task, &x, (tiles + 1) / 2, 1, threads);
  }
  return QG_OK;
}

/* ---------------- out[c][r] = in[r * in_stride + c] for c < cols (uint8) ---------------- */

typedef struct {
  const uint8_t* in;
  int64_t rows, cols, stride;
  uint8_t* out;
} tu8_ctx;

static void tu8_task(void* p, int64_t c0, int64_t c1) {
  const tu8_ctx* t = (const tu8_ctx*)p;
  for (int64_t cb = c0; cb < c1; cb += 32) {
    const int64_t ce = cb + 32 < c1 ? cb + 32 : c1;
    for (int64_t rb = 0; rb < t->rows; rb += 32) {
      const int64_t re = rb + 32 < t->rows ? rb + 32 : t->rows;
      for (int64_t c = cb; c < ce; c++)
        for (int64_t r = rb; r < re; r++) t->out[c * t->rows + r] = t->in[r * t->stride + c];
    }
  }
}

int qg_transpose_u8(const uint8_t* in, int64_t rows, int64_t cols, int64_t in_stride, uint8_t* out, int threads) {
  if (!in || !out || rows < 0 || cols < 0 || in_stride < cols || in == out) return QG_EINVAL;
  tu8_ctx t = {in, rows, cols, in_stride, out};
  qg_parallel_for(tu8_task, &t, cols, 64, threads);
  return QG_OK;
}

/* ---------------- sorted values and prefix sums (sortWeighted of codebook.ts, unit weights) ---------------- */

static inline uint32_t sort_key(float v) {
  uint32_t b;
  memcpy(&b, &v, 4);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u); /* ascending, -0 before +0 as Float64Array.sort */
}
static inline double key_value(uint32_t k) {
  const uint32_t b = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
  float v;
  memcpy(&v, &b, 4);
  return (double)v;
}

/* x: the values ascending (float64; its bytes serve as the radix sort's two key buffers first);
 * w, wx, wxx: count + 1 prefix sums of 1, x, x^2. QG_EINVAL when a value is not finite. */
int qg_sort_prefix_f32(const float* values, int64_t count, double* x, double* w, double* wx, double* wxx) {
  if (!values || !x || !w || !wx || !wxx || count < 0) return QG_EINVAL;
  for (int64_t i = 0; i < count; i++)
    if (!(__builtin_fabsf(values[i]) <= 3.4028234663852886e38f)) return QG_EINVAL;
  uint32_t* a = (uint32_t*)x;
  uint32_t* b = a + count;
  for (int64_t i = 0; i < count; i++) a[i] = sort_key(values[i]);
  for (int shift = 0; shift < 32; shift += 8) { /* LSD radix, four stable passes: ends in a */
    int64_t hist[256] = {0};
    for (int64_t i = 0; i < count; i++) hist[(a[i] >> shift) & 255]++;
    int64_t sum = 0;
    for (int d = 0; d < 256; d++) {
      const int64_t c = hist[d];
      hist[d] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < count; i++) b[hist[(a[i] >> shift) & 255]++] = a[i];
    uint32_t* t = a;
    a = b;
    b = t;
  }
  for (int64_t i = count - 1; i >= 0; i--) x[i] = key_value(a[i]); /* x[i] overwrites keys past i only */
  w[0] = wx[0] = wxx[0] = 0.0;
  for (int64_t i = 0; i < count; i++) {
    w[i + 1] = w[i] + 1.0;
    wx[i + 1] = wx[i] + 1.0 * x[i];
    wxx[i + 1] = wxx[i] + 1.0 * x[i] * x[i];
  }
  return QG_OK;
}

/* ---------------- weight statistics of the planners (quantx.ts, mixed-plan.ts), sequential float64 sums ---------------- */

/* out[0] = sum v^2, out[1] = sum (v^2)^2, out[2] = count of |v| > threshold (threshold < 0: not counted). */
int qg_weight_moments(const float* w, int64_t count, double threshold, double* out) {
  if (!w || !out || count < 0) return QG_EINVAL;
  double m2 = 0.0, m4 = 0.0;
  for (int64_t i = 0; i < count; i++) {
    const double s = (double)w[i] * (double)w[i];
    m2 += s;
    m4 += s * s;
  }
  int64_t above = 0;
  if (threshold >= 0.0)
    for (int64_t i = 0; i < count; i++) above += __builtin_fabs((double)w[i]) > threshold;
  out[0] = m2;
  out[1] = m4;
  out[2] = (double)above;
  return QG_OK;
}

/* sum over [n][k] in row-major order of h[col] * (w - deq)^2 (h NULL: 1), in float64. */
int qg_weighted_sq_error(const float* w, const float* deq, int64_t n, int64_t k, const double* h, double* out) {
  if (!w || !deq || !out || n < 0 || k < 0) return QG_EINVAL;
  double err = 0.0;
  for (int64_t r = 0; r < n; r++)
    for (int64_t c = 0; c < k; c++) {
      const double d = (double)w[r * k + c] - (double)deq[r * k + c];
      err += (h ? h[c] : 1.0) * d * d;
    }
  *out = err;
  return QG_OK;
}

/* ---------------- refineGroupScales of lowrank.ts: least-squares block scales on E[x^2] ---------------- */

typedef struct {
  const float* w;
  int64_t k;
  int bits, bs, rounds;
  const uint8_t* zp;
  const double* ms;
  uint8_t* codes;
  float* scales;
} rs_ctx;

static double rs_err(const float* w, const double* ms, int use_h, const uint8_t* cs, int64_t len, float zp, float s) {
  double err = 0.0;
  for (int64_t t = 0; t < len; t++) {
    const double d = (double)w[t] - (double)(((float)cs[t] - zp) * s);
    err += (use_h ? ms[t] : 1.0) * d * d;
  }
  return err;
}

/* The least-squares scale, or 0 with *ok = 0 when every code sits at the zero point. */
static float rs_solve(const float* w, const double* ms, int use_h, const uint8_t* cs, int64_t len, int zp, int* ok) {
  double num = 0.0, den = 0.0;
  for (int64_t t = 0; t < len; t++) {
    const double c = (double)((int)cs[t] - zp), h = use_h ? ms[t] : 1.0;
    num += h * (double)w[t] * c;
    den += h * c * c;
  }
  *ok = den > 0;
  return den > 0 ? (float)(num / den) : 0.0f;
}

static void rs_task(void* p, int64_t r0, int64_t r1) {
  const rs_ctx* c = (const rs_ctx*)p;
  const int64_t k = c->k, bs = c->bs, bpr = (k + bs - 1) / bs;
  const float qmax = (float)((1 << c->bits) - 1);
  uint8_t trial[QG_MAX_BLOCK];
  for (int64_t row = r0; row < r1; row++)
    for (int64_t blk = 0; blk < bpr; blk++) {
      const int64_t bi = row * bpr + blk, c0 = blk * bs, len = c0 + bs <= k ? bs : k - c0;
      const float* w = c->w + row * k + c0;
      const double* ms = c->ms + c0;
      uint8_t* cs = c->codes + bi * bs;
      const int zpi = c->zp[bi];
      const float zp = (float)zpi;
      double hsum = 0.0;
      for (int64_t t = 0; t < len; t++) hsum += ms[t];
      const int use_h = hsum > 0;
      float best = c->scales[bi];
      double best_err = rs_err(w, ms, use_h, cs, len, zp, best);
      int ok;
      const float s1 = rs_solve(w, ms, use_h, cs, len, zpi, &ok);
      if (ok && rs_err(w, ms, use_h, cs, len, zp, s1) < best_err) {
        best = s1;
        best_err = rs_err(w, ms, use_h, cs, len, zp, s1);
      }
      for (int round = 0; round < c->rounds; round++) {
        if (best == 0.0f) break;
        const float inv = 1.0f / best;
        for (int64_t t = 0; t < len; t++) trial[t] = qg_js_u8(qg_js_clamp(qg_round_away(w[t] * inv) + zp, 0.0f, qmax));
        const float s = rs_solve(w, ms, use_h, trial, len, zpi, &ok);
        if (!ok) break;
        const double e = rs_err(w, ms, use_h, trial, len, zp, s);
        if (!(e < best_err)) break;
        best = s;
        best_err = e;
        memcpy(cs, trial, (size_t)len);
      }
      c->scales[bi] = best;
    }
}

int qg_refine_scales(const float* wT, int64_t n, int64_t k, int bits, int bs, const uint8_t* zero_points, const double* mean_square,
                     int rounds, uint8_t* codes, float* scales, int threads) {
  if (!wT || !zero_points || !mean_square || !codes || !scales || n < 0 || k < 1 || bs < 1 || bs > QG_MAX_BLOCK || bits < 1 ||
      bits > 8 || rounds < 0)
    return QG_EINVAL;
  rs_ctx c = {wT, k, bits, bs, rounds, zero_points, mean_square, codes, scales};
  qg_parallel_for(rs_task, &c, n, 1 + 16384 / k, threads);
  return QG_OK;
}
