/* The float64 passes of the low-rank error correction (src/quantize/algorithms/lowrank.ts), the
 * calibration Gram accumulation (src/calibrate/index.ts) and the element-wise helpers of the quantize
 * and emit stages, bit-identical to their TypeScript references: every sum keeps the reference's order
 * (one accumulator per output, terms in the same sequence, multiply then add), and the SIMD comes from
 * computing many such sums side by side. Compile with -ffp-contract=off. */
#include <string.h>
#include "qg_internal.h"

#define LR_CHUNK 64 /* vectors handled side by side */
#define LR_TILE 64  /* columns per tile */

/* ---------------- out[i] = a[i] - b[i] in float64 ---------------- */

int qg_sub_f32_to_f64(const float* a, const float* b, int64_t count, double* out) {
  if (!a || !b || !out || count < 0) return QG_EINVAL;
  for (int64_t i = 0; i < count; i++) out[i] = (double)a[i] - (double)b[i];
  return QG_OK;
}

/* ---------------- out[c][j] = sum_r e[r][c] v_j[r] (r ascending, zero v skipped) ---------------- */

typedef struct {
  const double* e;
  int64_t n, k;
  const double* v;
  int64_t count;
  double* out; /* [k][count] */
} etv_ctx;

static void etv_task(void* p, int64_t t0, int64_t t1) {
  const etv_ctx* c = (const etv_ctx*)p;
  const int64_t n = c->n, k = c->k, count = c->count;
  for (int64_t tile = t0; tile < t1; tile++) {
    const int64_t c0 = tile * LR_TILE, c1 = c0 + LR_TILE < k ? c0 + LR_TILE : k;
    for (int64_t j0 = 0; j0 < count; j0 += LR_CHUNK) {
      const int64_t jn = count - j0 < LR_CHUNK ? count - j0 : LR_CHUNK;
      for (int64_t col = c0; col < c1; col++) memset(c->out + col * count + j0, 0, (size_t)jn * sizeof(double));
      for (int64_t r = 0; r < n; r++) {
        double vr[LR_CHUNK];
        int any = 0;
        for (int64_t j = 0; j < jn; j++) {
          vr[j] = c->v[(j0 + j) * n + r];
          any |= vr[j] != 0.0;
        }
        if (!any) continue;
        const double* er = c->e + r * k;
        for (int64_t col = c0; col < c1; col++) {
          const double ev = er[col];
          double* o = c->out + col * count + j0;
          for (int64_t j = 0; j < jn; j++) {
            const double t = ev * vr[j];
            o[j] += vr[j] != 0.0 ? t : 0.0; /* adding +0 to a sum that started at +0 changes nothing */
          }
        }
      }
    }
  }
}

int qg_lowrank_et_v(const double* e, int64_t n, int64_t k, const double* v, int64_t count, double* out, int threads) {
  if (!e || !v || !out || n < 0 || k < 1 || count < 0) return QG_EINVAL;
  etv_ctx c = {e, n, k, v, count, out};
  qg_parallel_for(etv_task, &c, (k + LR_TILE - 1) / LR_TILE, 1, threads);
  return QG_OK;
}

/* ---------------- y_j = E H E^T v_j (applyG of lowrank.ts for every vector) ---------------- */

typedef struct {
  const double* e;
  int64_t n, k;
  const double* h;
  int diag;
  int64_t count;
  const double* tt; /* [k][count] */
  double* ut;       /* [k][count] */
  double* y;        /* [count][n] */
} ag_ctx;

static void ag_h_task(void* p, int64_t i0, int64_t i1) {
  const ag_ctx* c = (const ag_ctx*)p;
  const int64_t k = c->k, count = c->count;
  for (int64_t i = i0; i < i1; i++) {
    if (c->diag) {
      for (int64_t j = 0; j < count; j++) c->ut[i * count + j] = c->h[i] * c->tt[i * count + j];
      continue;
    }
    const double* hr = c->h + i * k;
    for (int64_t j0 = 0; j0 < count; j0 += LR_CHUNK) {
      const int64_t jn = count - j0 < LR_CHUNK ? count - j0 : LR_CHUNK;
      double acc[LR_CHUNK];
      for (int64_t j = 0; j < jn; j++) acc[j] = 0.0;
      for (int64_t q = 0; q < k; q++) {
        const double hv = hr[q];
        const double* t = c->tt + q * count + j0;
        for (int64_t j = 0; j < jn; j++) acc[j] += hv * t[j];
      }
      for (int64_t j = 0; j < jn; j++) c->ut[i * count + j0 + j] = acc[j];
    }
  }
}

static void ag_e_task(void* p, int64_t r0, int64_t r1) {
  const ag_ctx* c = (const ag_ctx*)p;
  const int64_t n = c->n, k = c->k, count = c->count;
  for (int64_t r = r0; r < r1; r++) {
    const double* er = c->e + r * k;
    for (int64_t j0 = 0; j0 < count; j0 += LR_CHUNK) {
      const int64_t jn = count - j0 < LR_CHUNK ? count - j0 : LR_CHUNK;
      double acc[LR_CHUNK];
      for (int64_t j = 0; j < jn; j++) acc[j] = 0.0;
      for (int64_t q = 0; q < k; q++) {
        const double ev = er[q];
        const double* u = c->ut + q * count + j0;
        for (int64_t j = 0; j < jn; j++) acc[j] += ev * u[j];
      }
      for (int64_t j = 0; j < jn; j++) c->y[(j0 + j) * n + r] = acc[j];
    }
  }
}

int64_t qg_lowrank_apply_g_workspace_bytes(int64_t k, int64_t count) {
  if (k < 1 || count < 0) return -1;
  return 2 * k * count * (int64_t)sizeof(double);
}

int qg_lowrank_apply_g(const double* e, int64_t n, int64_t k, const double* h, int diag, const double* v, int64_t count,
                       double* y, void* ws, int threads) {
  if (!e || !h || !v || !y || !ws || n < 0 || k < 1 || count < 0) return QG_EINVAL;
  double* tt = (double*)ws;
  double* ut = tt + k * count;
  int rc = qg_lowrank_et_v(e, n, k, v, count, tt, threads);
  if (rc != QG_OK) return rc;
  ag_ctx c = {e, n, k, h, diag, count, tt, ut, y};
  qg_parallel_for(ag_h_task, &c, k, diag ? 4096 : 8, threads);
  qg_parallel_for(ag_e_task, &c, n, 8, threads);
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
