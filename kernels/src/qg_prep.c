/* The per-element passes around quantization that used to run in JavaScript: transposes, decoding
 * unpacked codes, the emitted weight's error statistics, code histograms and the clip search weighted
 * by per-channel importance. Each reproduces its TypeScript reference (src/quantize/blockwise.ts and
 * friends) bit for bit: same operations, same rounding, same summation order. */
#include <string.h>
#include "qg_internal.h"

/* ---------------- transpose ---------------- */

#define QG_TR_TILE 16

typedef struct {
  const float* in;
  int64_t rows, cols;
  float* out;
} tr_ctx;

typedef float qg_v4f __attribute__((vector_size(16)));

static inline qg_v4f load4(const float* p) {
  qg_v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void store4(float* p, qg_v4f v) { memcpy(p, &v, sizeof v); }

/* Output rows [c0, c1) (= input columns), in square tiles so both sides stay in cache; 4x4 register
 * transposes inside a tile (SSE / NEON / SIMD128 shuffles), scalar at the edges. */
static void tr_task(void* p, int64_t c0, int64_t c1) {
  const tr_ctx* t = (const tr_ctx*)p;
  const int64_t rows = t->rows, cols = t->cols;
  for (int64_t cb = c0; cb < c1; cb += QG_TR_TILE) {
    const int64_t ce = cb + QG_TR_TILE < c1 ? cb + QG_TR_TILE : c1;
    for (int64_t rb = 0; rb < rows; rb += QG_TR_TILE) {
      const int64_t re = rb + QG_TR_TILE < rows ? rb + QG_TR_TILE : rows;
      int64_t r = rb;
      for (; r + 4 <= re; r += 4) {
        const float* i0 = t->in + r * cols;
        int64_t c = cb;
        for (; c + 4 <= ce; c += 4) {
          const qg_v4f a = load4(i0 + c), b = load4(i0 + cols + c), cc = load4(i0 + 2 * cols + c), d = load4(i0 + 3 * cols + c);
          const qg_v4f t0 = __builtin_shufflevector(a, b, 0, 4, 1, 5), t1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
          const qg_v4f t2 = __builtin_shufflevector(cc, d, 0, 4, 1, 5), t3 = __builtin_shufflevector(cc, d, 2, 6, 3, 7);
          float* o = t->out + c * rows + r;
          store4(o, __builtin_shufflevector(t0, t2, 0, 1, 4, 5));
          store4(o + rows, __builtin_shufflevector(t0, t2, 2, 3, 6, 7));
          store4(o + 2 * rows, __builtin_shufflevector(t1, t3, 0, 1, 4, 5));
          store4(o + 3 * rows, __builtin_shufflevector(t1, t3, 2, 3, 6, 7));
        }
        for (; c < ce; c++)
          for (int64_t q = r; q < r + 4; q++) t->out[c * rows + q] = t->in[q * cols + c];
      }
      for (; r < re; r++)
        for (int64_t c = cb; c < ce; c++) t->out[c * rows + r] = t->in[r * cols + c];
    }
  }
}

int qg_transpose_f32(const float* in, int64_t rows, int64_t cols, float* out, int threads) {
  if (!in || !out || rows < 0 || cols < 0 || in == out) return QG_EINVAL;
  tr_ctx c = {in, rows, cols, out};
  qg_parallel_for(tr_task, &c, cols, 64, threads);
  return QG_OK;
}

/* ---------------- dequantize unpacked codes ---------------- */

typedef struct {
  const uint8_t* codes;
  const float* scales;
  const uint8_t* zp;
  int64_t k, bpr;
  int bs;
  float* out;
} dq_ctx;

static void dq_task(void* p, int64_t r0, int64_t r1) {
  const dq_ctx* c = (const dq_ctx*)p;
  for (int64_t row = r0; row < r1; row++) {
    float* o = c->out + row * c->k;
    for (int64_t b = 0; b < c->bpr; b++) {
      const int64_t bi = row * c->bpr + b, start = b * c->bs;
      const int64_t len = start + c->bs <= c->k ? c->bs : c->k - start;
      const uint8_t* cd = c->codes + bi * c->bs;
      const int z = c->zp[bi];
      const float s = c->scales[bi];
      for (int64_t i = 0; i < len; i++) o[start + i] = (float)((int)cd[i] - z) * s;
    }
  }
}

int qg_dequantize_codes(const uint8_t* codes, const float* scales, const uint8_t* zero_points, int64_t n, int64_t k, int bs,
                        float* out, int threads) {
  if (!codes || !scales || !zero_points || !out || n < 0 || k < 1 || bs < 1) return QG_EINVAL;
  dq_ctx c = {codes, scales, zero_points, k, (k + bs - 1) / bs, bs, out};
  qg_parallel_for(dq_task, &c, n, 1 + 65536 / k, threads);
  return QG_OK;
}

/* ---------------- error statistics of an emitted weight (weightError in quantize/index.ts) ---------------- */

int qg_weight_error(const float* w, const float* deq, int64_t n, int64_t k, double* sums, double* col_err,
                    double* col_norm) {
  if (!w || !deq || !sums || !col_err || !col_norm || n < 0 || k < 1) return QG_EINVAL;
  memset(col_err, 0, (size_t)k * sizeof(double));
  memset(col_norm, 0, (size_t)k * sizeof(double));
  double err = 0, norm = 0, max_abs = 0;
  /* The per-column sums vectorize; the two whole-matrix sums stay in the reference's element order. */
  double d2[256], w2[256], lane_max[4] = {0, 0, 0, 0};
  for (int64_t row = 0; row < n; row++) {
    const float* wr = w + row * k;
    const float* dr = deq + row * k;
    for (int64_t c0 = 0; c0 < k; c0 += 256) {
      const int64_t len = k - c0 < 256 ? k - c0 : 256;
      for (int64_t i = 0; i < len; i++) {
        const double wv = wr[c0 + i], d = wv - (double)dr[c0 + i];
        d2[i] = d * d;
        w2[i] = wv * wv;
        col_err[c0 + i] += d2[i];
        col_norm[c0 + i] += w2[i];
        const double a = __builtin_fabs(d);
        lane_max[i & 3] = a > lane_max[i & 3] ? a : lane_max[i & 3]; /* NaN never wins, as in the reference */
      }
      for (int64_t i = 0; i < len; i++) {
        err += d2[i];
        norm += w2[i];
      }
    }
  }
  for (int l = 0; l < 4; l++) max_abs = lane_max[l] > max_abs ? lane_max[l] : max_abs;
  sums[0] = err;
  sums[1] = norm;
  sums[2] = max_abs;
  return QG_OK;
}

/* qg_weight_error of deq = dequantized codes, decoded on the fly (no [n][k] float buffer). */
int qg_weight_error_codes(const float* w, const uint8_t* codes, const float* scales, const uint8_t* zero_points, int64_t n,
                          int64_t k, int bs, double* sums, double* col_err, double* col_norm) {
  if (!w || !codes || !scales || !zero_points || !sums || !col_err || !col_norm || n < 0 || k < 1 || bs < 1 || bs > QG_MAX_BLOCK) return QG_EINVAL;
  memset(col_err, 0, (size_t)k * sizeof(double));
  memset(col_norm, 0, (size_t)k * sizeof(double));
  const int64_t bpr = (k + bs - 1) / bs;
  double err = 0, norm = 0, max_abs = 0;
  double d2[QG_MAX_BLOCK], w2[QG_MAX_BLOCK], lane_max[4] = {0, 0, 0, 0};
  for (int64_t row = 0; row < n; row++) {
    const float* wr = w + row * k;
    for (int64_t b = 0; b < bpr; b++) {
      const int64_t c0 = b * bs, len = c0 + bs <= k ? bs : k - c0, bi = row * bpr + b;
      const uint8_t* cd = codes + bi * bs;
      const int z = zero_points[bi];
      const float s = scales[bi];
      for (int64_t i = 0; i < len; i++) {
        const float deq = (float)((int)cd[i] - z) * s;
        const double wv = wr[c0 + i], d = wv - (double)deq;
        d2[i] = d * d;
        w2[i] = wv * wv;
        col_err[c0 + i] += d2[i];
        col_norm[c0 + i] += w2[i];
        const double a = __builtin_fabs(d);
        lane_max[i & 3] = a > lane_max[i & 3] ? a : lane_max[i & 3];
      }
      for (int64_t i = 0; i < len; i++) {
        err += d2[i];
        norm += w2[i];
      }
    }
  }
  for (int l = 0; l < 4; l++) max_abs = lane_max[l] > max_abs ? lane_max[l] : max_abs;
  sums[0] = err;
  sums[1] = norm;
  sums[2] = max_abs;
  return QG_OK;
}

/* ---------------- histogram of codes ---------------- */

/* Counts of each byte value below `alphabet` (hist[alphabet], float64 counts); QG_EINVAL when a code
 * is not below the alphabet (the caller reports which). */
int qg_histogram_u8(const uint8_t* codes, int64_t count, int alphabet, double* hist) {
  if ((!codes && count > 0) || !hist || count < 0 || alphabet < 1 || alphabet > 256) return QG_EINVAL;
  uint32_t h[4][256];
  memset(h, 0, sizeof h);
  for (int64_t base = 0; base < count; base += (int64_t)1 << 30) { /* uint32 counters never overflow */
    const int64_t end = count - base > ((int64_t)1 << 30) ? base + ((int64_t)1 << 30) : count;
    int64_t i = base;
    for (; i + 4 <= end; i += 4) {
      h[0][codes[i]]++;
      h[1][codes[i + 1]]++;
      h[2][codes[i + 2]]++;
      h[3][codes[i + 3]]++;
    }
    for (; i < end; i++) h[0][codes[i]]++;
    for (int s = 0; s < 256; s++) {
      const uint32_t t = h[0][s] + h[1][s] + h[2][s] + h[3][s];
      if (t && s >= alphabet) return QG_EINVAL;
      if (s < alphabet) hist[s] = (base == 0 ? 0.0 : hist[s]) + (double)t;
      h[0][s] = h[1][s] = h[2][s] = h[3][s] = 0;
    }
  }
  if (count == 0)
    for (int s = 0; s < alphabet; s++) hist[s] = 0;
  return QG_OK;
}

/* ---------------- clip search weighted by per-channel importance ---------------- */

typedef struct {
  const float* wT;
  int64_t k;
  int bits, bs, sym, clip;
  const float* imp;
  uint8_t* codes;
  float* scales;
  uint8_t* zp;
} qw_ctx;

static void block_range_w(const float* w, int64_t len, float* lo_out, float* hi_out, float* ext_out) {
  float lo = 0.0f, hi = 0.0f, ext = 0.0f;
  for (int64_t i = 0; i < len; i++) {
    const float v = w[i];
    if (__builtin_fabsf(v) > __builtin_fabsf(ext)) ext = v;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  *lo_out = lo;
  *hi_out = hi;
  *ext_out = ext;
}

/* encodeBlock() with importance: err = f(err + f(imp * f(d * d))). */
static float encode_block_w(const float* w, const float* imp, int64_t len, block_params p, float qmax, uint8_t* out) {
  const float inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
  float err = 0.0f;
  for (int64_t i = 0; i < len; i++) {
    const float v = w[i];
    const float q = qg_js_clamp(qg_round_away(v * inv) + p.zp, 0.0f, qmax);
    out[i] = qg_js_u8(q);
    const float d = v - (q - p.zp) * p.scale;
    const float d2 = d * d;
    err = err + imp[i] * d2;
  }
  return err;
}

typedef float qg_v4f_w __attribute__((vector_size(16)));
typedef int32_t qg_v4i_w __attribute__((vector_size(16)));

/* m ? a : b per lane (m: all ones or zero, as vector comparisons give). */
static inline qg_v4f_w sel4(qg_v4i_w m, qg_v4f_w a, qg_v4f_w b) {
  return (qg_v4f_w)(((qg_v4i_w)a & m) | ((qg_v4i_w)b & ~m));
}

/* The 16 clip ratios' weighted errors of one block at once, four ratios per vector (every target's
 * native width), each lane the scalar encode_block_w's exact operations in the same element order.
 * Finite blocks only. Rounding: values are clamped to +-300 first, which changes no code (past that,
 * round(x) + zp is outside [0, qmax] either way and saturates). */
static inline qg_v4f_w load4f(const float* p) {
  qg_v4f_w v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* One lane group's step: the scalar encode_block_w's operations on four ratios. */
#define QG_W16_STEP(E, INV, ZP, SC)                                     \
  do {                                                                  \
    qg_v4f_w x = v * INV;                                               \
    x = sel4(x < -lim, -lim, x);                                        \
    x = sel4(x > lim, lim, x);                                          \
    qg_v4f_w t = __builtin_convertvector(__builtin_convertvector(x, qg_v4i_w), qg_v4f_w); \
    const qg_v4f_w fr = x - t, afr = sel4(fr < zero, -fr, fr);          \
    t = sel4(afr >= half, t + sel4(x < zero, -one, one), t);            \
    qg_v4f_w q = t + ZP;                                                \
    q = sel4(q < zero, zero, q);                                        \
    q = sel4(q > vq, vq, q);                                            \
    const qg_v4f_w d = v - (q - ZP) * SC;                               \
    const qg_v4f_w d2 = d * d;                                          \
    E = E + im * d2;                                                    \
  } while (0)

/* The 16 clip ratios' weighted errors of one block at once, four ratios per vector (every target's
 * native width), each lane the scalar encode_block_w's exact operations in the same element order.
 * Finite blocks only. Rounding: values are clamped to +-300 first, which changes no code (past that,
 * round(x) + zp is outside [0, qmax] either way and saturates). */
static void weighted_errors16(const float* w, const float* imp, int64_t len, const block_params* p, float qmax, float* err) {
  float fi[16], fz[16], fs[16];
  for (int r = 0; r < 16; r++) {
    fi[r] = p[r].scale == 0.0f ? 0.0f : 1.0f / p[r].scale;
    fz[r] = p[r].zp;
    fs[r] = p[r].scale;
  }
  const qg_v4f_w inv0 = load4f(fi), inv1 = load4f(fi + 4), inv2 = load4f(fi + 8), inv3 = load4f(fi + 12);
  const qg_v4f_w zp0 = load4f(fz), zp1 = load4f(fz + 4), zp2 = load4f(fz + 8), zp3 = load4f(fz + 12);
  const qg_v4f_w sc0 = load4f(fs), sc1 = load4f(fs + 4), sc2 = load4f(fs + 8), sc3 = load4f(fs + 12);
  const qg_v4f_w lim = {300.0f, 300.0f, 300.0f, 300.0f}, half = {0.5f, 0.5f, 0.5f, 0.5f}, zero = {0, 0, 0, 0};
  const qg_v4f_w one = {1.0f, 1.0f, 1.0f, 1.0f}, vq = {qmax, qmax, qmax, qmax};
  qg_v4f_w e0 = zero, e1 = zero, e2 = zero, e3 = zero;
  for (int64_t i = 0; i < len; i++) {
    const qg_v4f_w v = {w[i], w[i], w[i], w[i]}, im = {imp[i], imp[i], imp[i], imp[i]};
    QG_W16_STEP(e0, inv0, zp0, sc0);
    QG_W16_STEP(e1, inv1, zp1, sc1);
    QG_W16_STEP(e2, inv2, zp2, sc2);
    QG_W16_STEP(e3, inv3, zp3, sc3);
  }
  memcpy(err, &e0, sizeof e0);
  memcpy(err + 4, &e1, sizeof e1);
  memcpy(err + 8, &e2, sizeof e2);
  memcpy(err + 12, &e3, sizeof e3);
}

static void qw_task(void* p, int64_t r0, int64_t r1) {
  const qw_ctx* c = (const qw_ctx*)p;
  const float qmax = (float)((1 << c->bits) - 1);
  const int64_t bpr = (c->k + c->bs - 1) / c->bs;
  const int nratios = c->clip ? 16 : 1;
  uint8_t scratch[QG_MAX_BLOCK];
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = c->wT + row * c->k + b * c->bs;
      const float* imp = c->imp + b * c->bs;
      const int64_t len = (b + 1) * c->bs <= c->k ? c->bs : c->k - b * c->bs;
      const int64_t bi = row * bpr + b;
      uint8_t* out = c->codes + bi * c->bs;
      float lo, hi, ext;
      block_range_w(w, len, &lo, &hi, &ext);
      int finite = 1;
      for (int64_t i = 0; i < len; i++) finite &= (w[i] - w[i] == 0.0f) & (imp[i] - imp[i] == 0.0f);
      block_params best = params_from_range(lo, hi, ext, c->bits, c->sym, qg_clip_ratio(0));
      if (nratios == 16 && finite) {
        block_params ps[16];
        float errs[16];
        for (int r = 0; r < 16; r++) ps[r] = params_from_range(lo, hi, ext, c->bits, c->sym, qg_clip_ratio(r));
        weighted_errors16(w, imp, len, ps, qmax, errs);
        int pick = 0;
        for (int r = 1; r < 16; r++)
          if (errs[r] < errs[pick]) pick = r;
        best = ps[pick];
        encode_block_w(w, imp, len, best, qmax, out);
      } else {
        float best_err = encode_block_w(w, imp, len, best, qmax, out);
        for (int r = 1; r < nratios; r++) {
          const block_params q = params_from_range(lo, hi, ext, c->bits, c->sym, qg_clip_ratio(r));
          const float e = encode_block_w(w, imp, len, q, qmax, scratch);
          if (e < best_err) {
            best_err = e;
            best = q;
            memcpy(out, scratch, (size_t)len);
          }
        }
      }
      c->scales[bi] = best.scale;
      c->zp[bi] = qg_js_u8(best.zp);
      memset(out + len, qg_js_u8(best.zp), (size_t)(c->bs - len));
    }
  }
}

int qg_quantize_int_weighted(const float* wT, int64_t n, int64_t k, int bits, int bs, int symmetric, int clip_search,
                             const float* importance, uint8_t* codes, float* scales, uint8_t* zero_points, int threads) {
  if (!wT || !importance || !codes || !scales || !zero_points || n < 0 || k < 1) return QG_EINVAL;
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8) || bs < 8 || bs > QG_MAX_BLOCK || bs % 8) return QG_EINVAL;
  qw_ctx c = {wT, k, bits, bs, symmetric != 0, clip_search != 0, importance, codes, scales, zero_points};
  qg_parallel_for(qw_task, &c, n, 1 + 16384 / k, threads);
  return QG_OK;
}

/* ---------------- sum of quadratic forms (sumQuadraticForms in quantize/algorithms/linalg.ts) ---------------- */

typedef double qg_v2d __attribute__((vector_size(16)));

typedef struct {
  const double* h;
  const double* dt; /* [rows8 / 8][k][8]: d transposed by groups of eight rows (zeros past rows) */
  int64_t rows, rows8, k, tiles;
  double* s; /* [k][rows8]: sum_{j>i} h[i][j] d[r][j] */
  int wide;
} qf_ctx;

#define QF_IB 128 /* rows of H per task */
#define QF_JB 128 /* columns of H per pass: the H slab and one group's D slab stay in cache */

/* s[i][r] += h[i][j] d[r][j] for j in [j0, j1), j > i, i in [i, i + ni) (ni <= 4), eight rows r of one
 * group. Every (i, r) sum takes its terms in ascending j, one multiply then one add, as the reference;
 * the partial sums wait in s between passes, which changes no bit. */
#define QF_QUAD_BODY(V, LANES)                                                                                        \
  {                                                                                                                   \
    enum { NV = 8 / LANES };                                                                                          \
    V acc[4][NV];                                                                                                     \
    for (int q = 0; q < ni; q++)                                                                                      \
      for (int v = 0; v < NV; v++) memcpy(&acc[q][v], s + (i + q) * rows8 + v * LANES, sizeof(V));                    \
    int64_t j = j0 > i + 1 ? j0 : i + 1;                                                                              \
    for (; j < j1 && j < i + ni; j++) { /* the diagonal corner: row q takes j only past i + q */                     \
      V dv[NV];                                                                                                       \
      for (int v = 0; v < NV; v++) memcpy(&dv[v], dg + j * 8 + v * LANES, sizeof(V));                                 \
      for (int q = 0; q < ni; q++)                                                                                    \
        if (j > i + q) {                                                                                              \
          const V hv = h[(i + q) * k + j] - (V){0};                                                                   \
          for (int v = 0; v < NV; v++) acc[q][v] = acc[q][v] + hv * dv[v];                                            \
        }                                                                                                             \
    }                                                                                                                 \
    if (ni == 4) {                                                                                                    \
      const double *h0 = h + i * k, *h1 = h0 + k, *h2 = h1 + k, *h3 = h2 + k;                                         \
      for (; j < j1; j++) {                                                                                           \
        V dv[NV];                                                                                                     \
        for (int v = 0; v < NV; v++) memcpy(&dv[v], dg + j * 8 + v * LANES, sizeof(V));                               \
        const V a = h0[j] - (V){0}, b = h1[j] - (V){0}, c = h2[j] - (V){0}, e = h3[j] - (V){0};                        \
        for (int v = 0; v < NV; v++) {                                                                                \
          acc[0][v] = acc[0][v] + a * dv[v];                                                                          \
          acc[1][v] = acc[1][v] + b * dv[v];                                                                          \
          acc[2][v] = acc[2][v] + c * dv[v];                                                                          \
          acc[3][v] = acc[3][v] + e * dv[v];                                                                          \
        }                                                                                                             \
      }                                                                                                               \
    } else {                                                                                                          \
      for (; j < j1; j++) {                                                                                           \
        V dv[NV];                                                                                                     \
        for (int v = 0; v < NV; v++) memcpy(&dv[v], dg + j * 8 + v * LANES, sizeof(V));                               \
        for (int q = 0; q < ni; q++) {                                                                                \
          const V hv = h[(i + q) * k + j] - (V){0};                                                                   \
          for (int v = 0; v < NV; v++) acc[q][v] = acc[q][v] + hv * dv[v];                                            \
        }                                                                                                             \
      }                                                                                                               \
    }                                                                                                                 \
    for (int q = 0; q < ni; q++)                                                                                      \
      for (int v = 0; v < NV; v++) memcpy(s + (i + q) * rows8 + v * LANES, &acc[q][v], sizeof(V));                   \
  }

static void qf_quad2(const double* h, const double* dg, double* s, int64_t k, int64_t rows8, int64_t i, int ni, int64_t j0,
                     int64_t j1) QF_QUAD_BODY(qg_v2d, 2)

#if defined(__x86_64__) && !defined(QG_SCALAR_ONLY)
typedef double qg_v4d __attribute__((vector_size(32)));
__attribute__((target("avx2"))) static void qf_quad4(const double* h, const double* dg, double* s, int64_t k, int64_t rows8,
                                                     int64_t i, int ni, int64_t j0, int64_t j1) QF_QUAD_BODY(qg_v4d, 4)
typedef double qg_v8d __attribute__((vector_size(64)));
__attribute__((target("avx512f"))) static void qf_quad8(const double* h, const double* dg, double* s, int64_t k, int64_t rows8,
                                                        int64_t i, int ni, int64_t j0, int64_t j1) QF_QUAD_BODY(qg_v8d, 8)
#endif

static void qf_task(void* p, int64_t t0, int64_t t1) {
  const qf_ctx* c = (const qf_ctx*)p;
  const int64_t k = c->k, rows8 = c->rows8;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t tile = (t & 1) ? c->tiles - 1 - t / 2 : t / 2; /* mix long and short rows of the triangle */
    const int64_t i0 = tile * QF_IB, i1 = i0 + QF_IB < k ? i0 + QF_IB : k;
    memset(c->s + i0 * rows8, 0, (size_t)((i1 - i0) * rows8) * sizeof(double));
    for (int64_t j0 = (i0 + 1) / QF_JB * QF_JB; j0 < k; j0 += QF_JB) {
      const int64_t j1 = j0 + QF_JB < k ? j0 + QF_JB : k;
      for (int64_t r0 = 0; r0 < rows8; r0 += 8) {
        const double* dg = c->dt + r0 * k;
        for (int64_t i = i0; i < i1 && i + 1 < j1; i += 4) {
          const int ni = (int)(i1 - i < 4 ? i1 - i : 4);
#if defined(__x86_64__) && !defined(QG_SCALAR_ONLY)
          if (c->wide == 2) {
            qf_quad8(c->h, dg, c->s + r0, k, rows8, i, ni, j0, j1);
            continue;
          }
          if (c->wide) {
            qf_quad4(c->h, dg, c->s + r0, k, rows8, i, ni, j0, j1);
            continue;
          }
#endif
          qf_quad2(c->h, dg, c->s + r0, k, rows8, i, ni, j0, j1);
        }
      }
    }
  }
}

int64_t qg_quadratic_forms_workspace_bytes(int64_t rows, int64_t k) {
  if (rows < 0 || k < 1) return 0;
  return 2 * k * ((rows + 7) / 8 * 8) * 8 + 64;
}

/* sum over rows r of d_r^T H d_r, H symmetric k x k (upper triangle read), in the reference's order:
 * groups of 8 rows, then i, then r: total += d_ri * (h_ii d_ri + 2 sum_{j>i} h_ij d_rj), rows with
 * d_ri == 0 skipped. The inner sums run in parallel (eight rows per vector); the total is added in order. */
/* The sum for each segment of seg_rows consecutive rows (seg_rows a multiple of 8, or rows), each exactly
 * what qg_sum_quadratic_forms returns for those rows alone: out[rows / seg_rows]. One pass over H serves
 * every segment (AWQ's grid points at once). */
int qg_sum_quadratic_forms_segments(const double* h, const double* d, int64_t rows, int64_t k, int64_t seg_rows, void* ws, int threads,
                                    double* out) {
  if (!h || !d || !ws || !out || rows < 0 || k < 1 || seg_rows < 1 || (seg_rows % 8 && seg_rows != rows) || rows % seg_rows)
    return QG_EINVAL;
  const int64_t rows8 = (rows + 7) / 8 * 8;
  double* dt = (double*)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  double* s = dt + k * rows8;
  for (int64_t r = 0; r < rows8; r++)
    for (int64_t j = 0; j < k; j++) dt[(r / 8) * k * 8 + j * 8 + r % 8] = r < rows ? d[r * k + j] : 0.0;
  const char* isa = qg_dispatch_table()->isa;
  qf_ctx c = {h, dt, rows, rows8, k, (k + QF_IB - 1) / QF_IB, s, isa[0] != 'a' ? 0 : isa[3] == '5' ? 2 : 1};
  qg_parallel_for(qf_task, &c, c.tiles, 1, threads);
  for (int64_t seg = 0; seg * seg_rows < rows || (rows == 0 && seg == 0); seg++) {
    double total = 0;
    const int64_t s0 = seg * seg_rows, s1 = s0 + seg_rows < rows ? s0 + seg_rows : rows;
    for (int64_t r0 = s0; r0 < s1; r0 += 8) {
      const int64_t r1 = r0 + 8 < s1 ? r0 + 8 : s1;
      for (int64_t i = 0; i < k; i++) {
        const double hii = h[i * k + i];
        for (int64_t r = r0; r < r1; r++) {
          const double di = d[r * k + i];
          if (di == 0) continue;
          total += di * (hii * di + 2 * s[i * rows8 + r]);
        }
      }
    }
    out[seg] = total;
    if (rows == 0) break;
  }
  return QG_OK;
}

int qg_sum_quadratic_forms(const double* h, const double* d, int64_t rows, int64_t k, void* ws, int threads, double* out) {
  if (rows == 0) {
    if (!h || !d || !ws || !out || k < 1) return QG_EINVAL;
    *out = 0;
    return QG_OK;
  }
  return qg_sum_quadratic_forms_segments(h, d, rows, k, rows, ws, threads, out);
}
