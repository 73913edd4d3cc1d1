/* GPTQ (Frantar et al. 2022) in C, operation for operation the TypeScript reference
 * (src/quantize/algorithms/gptq.ts), so codes, scales and zero points are bit-identical:
 * - the upper Cholesky factor of the damped inverse Hessian by a blocked right-looking Cholesky and a
 *   blocked triangular inverse. Each element still receives its updates one at a time in ascending
 *   order, as in the reference's dot products, so blocking and vectorizing (across columns) change no
 *   bit; only products that are exactly zero are added instead of skipped, which leaves every value as it is.
 * - the column sweep with two-level lazy batches: the error of each column updates the rest of its
 *   small batch at once and the later columns through exact-order rank updates. An element's updates
 *   still arrive one column at a time in ascending column order, so the result does not depend on the
 *   batch sizes, and rows are independent, so row tiles run in parallel.
 * The rank updates are the dispatch's rank_update (SIMD where the CPU has it, a portable body otherwise). */
#include <string.h>
#include "qg_internal.h"

#define QG_RU_CAT2(a, b) a##b
#define QG_RU_CAT(a, b) QG_RU_CAT2(a, b)
#define QG_RU_NAME qg_rank_update_ref
#define QG_RU_ATTR
#define QG_RU_W 2
#include "qg_rank_update.h"
#undef QG_RU_NAME
#undef QG_RU_ATTR
#undef QG_RU_W

#define NB 64  /* Cholesky panel width */
#define IB 64  /* triangular inverse row tile */
#define RT 32  /* rows per GPTQ sweep task */

enum { QG_ENOTPD = -3 };

/* ---------------- Cholesky of the (rotated) damped Hessian ---------------- */

typedef struct {
  const qg_dispatch* d;
  double* a;
  int64_t k, p0, p1, tiles;
  const double* pt; /* panel transposed: pt[p - p0][j] = a[j][p] */
  int failed;
} chol_ctx;

/* Panel columns [p0, p1) of rows [r0, r1) (all >= p1, or the panel's own rows one at a time). */
static int chol_panel_rows(double* a, int64_t k, int64_t p0, int64_t p1, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; i++) {
    double* ri = a + i * k;
    const int64_t jend = i < p1 ? i : p1;
    for (int64_t j = p0; j < jend; j++) {
      const double* rj = a + j * k;
      double t = ri[j];
      for (int64_t p = p0; p < j; p++) t = t - ri[p] * rj[p];
      ri[j] = t / rj[j];
    }
    if (i < p1) {
      double s = ri[i];
      for (int64_t p = p0; p < i; p++) s = s - ri[p] * ri[p];
      if (!(s > 0) || !(s - s == 0)) return 0;
      ri[i] = __builtin_sqrt(s);
    }
  }
  return 1;
}

static void chol_below_task(void* p, int64_t t0, int64_t t1) {
  chol_ctx* c = (chol_ctx*)p;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t r0 = c->p1 + t * 16, r1 = r0 + 16 < c->k ? r0 + 16 : c->k;
    chol_panel_rows(c->a, c->k, c->p0, c->p1, r0, r1);
  }
}

/* Tile index -> row tile, alternating ends so the contiguous ranges each thread takes hold a mix of
 * short and long (triangular) rows. */
static int64_t mixed_tile(int64_t t, int64_t tiles) { return (t & 1) ? tiles - 1 - t / 2 : t / 2; }

static void chol_trail_task(void* p, int64_t t0, int64_t t1) {
  chol_ctx* c = (chol_ctx*)p;
  const int64_t depth = c->p1 - c->p0;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t tile = mixed_tile(t, c->tiles);
    const int64_t r0 = c->p1 + tile * 32, r1 = r0 + 32 < c->k ? r0 + 32 : c->k;
    /* rows [r0, r1), columns [p1, r1): the lower triangle plus a few upper entries, zeroed later */
    c->d->rank_update(c->a + r0 * c->k + c->p1, c->k, c->a + r0 * c->k + c->p0, c->k, c->pt, c->k - c->p1, r1 - r0, r1 - c->p1,
                      depth);
  }
}

/* In-place lower Cholesky (choleskyLowerInPlace): 0 when a pivot is not positive and finite. */
static int cholesky_lower(const qg_dispatch* d, double* a, int64_t k, double* pt, int threads) {
  for (int64_t p0 = 0; p0 < k; p0 += NB) {
    const int64_t p1 = p0 + NB < k ? p0 + NB : k;
    if (!chol_panel_rows(a, k, p0, p1, p0, p1)) return 0;
    if (p1 == k) break;
    chol_ctx c = {d, a, k, p0, p1, 0, pt, 0};
    qg_parallel_for(chol_below_task, &c, (k - p1 + 15) / 16, 1, threads);
    for (int64_t j = p1; j < k; j++)
      for (int64_t p = p0; p < p1; p++) pt[(p - p0) * (k - p1) + (j - p1)] = a[j * k + p];
    c.tiles = (k - p1 + 31) / 32;
    qg_parallel_for(chol_trail_task, &c, c.tiles, 1, threads);
  }
  for (int64_t i = 0; i < k; i++) memset(a + i * k + i + 1, 0, (size_t)(k - i - 1) * sizeof(double));
  return 1;
}

/* ---------------- inverse of the lower factor (invertLowerInPlace) ---------------- */

typedef struct {
  const qg_dispatch* d;
  const double* a;
  int64_t k, i0, rows, chunks;
  double* nacc;     /* rows x k: minus the reference's acc */
  const double* lt; /* rows x k: the tile's rows of L */
} inv_ctx;

static void inv_task(void* p, int64_t t0, int64_t t1) {
  inv_ctx* c = (inv_ctx*)p;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t j0 = mixed_tile(t, c->chunks) * 64, j1 = j0 + 64 < c->i0 ? j0 + 64 : c->i0;
    /* Only rows p >= j0 of M have entries in columns >= j0. */
    c->d->rank_update(c->nacc + j0, c->k, c->lt + j0, c->k, c->a + j0 * c->k + j0, c->k, c->rows, j1 - j0, c->i0 - j0);
  }
}

static void invert_lower(const qg_dispatch* d, double* a, int64_t k, double* nacc, double* lt, int threads) {
  for (int64_t i0 = 0; i0 < k; i0 += IB) {
    const int64_t i1 = i0 + IB < k ? i0 + IB : k, rows = i1 - i0;
    memcpy(lt, a + i0 * k, (size_t)(rows * k) * sizeof(double));
    memset(nacc, 0, (size_t)(rows * k) * sizeof(double));
    if (i0 > 0) {
      inv_ctx c = {d, a, k, i0, rows, (i0 + 63) / 64, nacc, lt};
      qg_parallel_for(inv_task, &c, c.chunks, 1, threads);
    }
    for (int64_t i = i0; i < i1; i++) {
      double* na = nacc + (i - i0) * k;
      const double* li = lt + (i - i0) * k;
      for (int64_t p = i0; p < i; p++) { /* rows of the tile finished above */
        const double l = li[p];
        if (l == 0) continue;
        const double* mp = a + p * k;
        for (int64_t j = 0; j <= p; j++) na[j] = na[j] - l * mp[j];
      }
      const double inv = 1 / li[i];
      double* ri = a + i * k;
      for (int64_t j = 0; j < i; j++) ri[j] = na[j] * inv;
      ri[i] = inv;
    }
  }
}

static void rotate_half_turn(double* a, int64_t k) {
  const int64_t last = k * k - 1;
  for (int64_t i = 0; i < (k * k) >> 1; i++) {
    const double t = a[i];
    a[i] = a[last - i];
    a[last - i] = t;
  }
}

/* ---------------- the column sweep ---------------- */

typedef struct {
  const qg_dispatch* d;
  const double* u;
  double* wp;
  double* err;
  const int32_t* perm;
  int64_t n, k, bpr, b1, b2;
  int bits, bs, sym, clip, static_groups;
  uint8_t* codes;
  float* scales;
  uint8_t* zp;
} sweep_ctx;

static void sweep_rows(const sweep_ctx* c, int64_t r0, int64_t r1) {
  const int64_t k = c->k, bs = c->bs, rows = r1 - r0;
  const float qmax = (float)((1 << c->bits) - 1);
  double* wp = c->wp + r0 * k;
  double* err = c->err + r0 * c->b1;
  float cur[RT * QG_MAX_BLOCK];
  uint8_t cur_codes[RT * QG_MAX_BLOCK], cur_zp[RT];
  float cur_scales[RT];
  for (int64_t i1 = 0; i1 < k; i1 += c->b1) {
    const int64_t i2 = i1 + c->b1 < k ? i1 + c->b1 : k;
    for (int64_t s1 = i1; s1 < i2; s1 += c->b2) {
      const int64_t s2 = s1 + c->b2 < i2 ? s1 + c->b2 : i2;
      for (int64_t i = s1; i < s2; i++) {
        const int64_t col = c->perm[i], block = col / bs;
        if (!c->static_groups && col % bs == 0) {
          /* Dynamic groups: parameters from the current weights of this block (all updates in). */
          const int64_t len = bs < k - col ? bs : k - col;
          for (int64_t r = 0; r < rows; r++)
            for (int64_t t = 0; t < len; t++) cur[r * len + t] = (float)wp[r * k + i + t];
          qg_quantize_int_ref(cur, len, c->bits, (int)len, c->sym, c->clip, cur_codes, cur_scales, cur_zp, 0, rows);
          for (int64_t r = 0; r < rows; r++) {
            c->scales[(r0 + r) * c->bpr + block] = cur_scales[r];
            c->zp[(r0 + r) * c->bpr + block] = cur_zp[r];
          }
        }
        const double* ui = c->u + i * k;
        const double dii = ui[i];
        for (int64_t r = 0; r < rows; r++) {
          const int64_t bi = (r0 + r) * c->bpr + block;
          const float scale = c->scales[bi], z = (float)c->zp[bi];
          const float inv = scale == 0.0f ? 0.0f : 1.0f / scale;
          double* wr = wp + r * k;
          const double x = wr[i];
          const float q = qg_js_clamp(qg_round_away((float)x * inv) + z, 0.0f, qmax);
          c->codes[bi * bs + col % bs] = qg_js_u8(q);
          const double e = (x - (double)((q - z) * scale)) / dii;
          err[r * c->b1 + (i - i1)] = e;
          if (e == 0) continue;
          for (int64_t j = i + 1; j < s2; j++) wr[j] = wr[j] - e * ui[j];
        }
      }
      if (s2 < i2) /* the rest of the outer batch */
        c->d->rank_update(wp + s2, k, err + (s1 - i1), c->b1, c->u + s1 * k + s2, k, rows, i2 - s2, s2 - s1);
    }
    if (i2 < k) c->d->rank_update(wp + i2, k, err, c->b1, c->u + i1 * k + i2, k, rows, k - i2, i2 - i1);
  }
}

static void sweep_task(void* p, int64_t t0, int64_t t1) {
  const sweep_ctx* c = (const sweep_ctx*)p;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t r0 = t * RT, r1 = r0 + RT < c->n ? r0 + RT : c->n;
    sweep_rows(c, r0, r1);
  }
}

/* ---------------- entry ---------------- */

static int64_t batch_outer(int64_t b2) { return (256 / b2 > 1 ? 256 / b2 : 1) * b2; }
static int64_t batch_inner(int bs, int static_groups) {
  if (static_groups) return 64;
  return bs >= 64 ? bs : (64 / bs) * bs;
}

static int64_t align64(int64_t bytes) { return (bytes + 63) & ~(int64_t)63; }

int64_t qg_gptq_workspace_bytes(int64_t n, int64_t k) {
  if (n < 0 || k < 1) return 0;
  const int64_t b1 = 256 + QG_MAX_BLOCK; /* at least the largest outer batch */
  int64_t b = 64;
  b += align64(k * k * 8);           /* H, then U */
  b += align64(n * k * 8);           /* permuted weights */
  b += align64(n * b1 * 8);          /* column errors of an outer batch */
  b += align64((NB > IB ? NB : IB) * k * 8 * 2); /* Cholesky panel / inverse accumulators and rows */
  b += align64(k * 8) + align64(k * 4) * 2 + align64(k);
  return b;
}

/* Stable merge sort of indices by decreasing key (ties by index), as Array.prototype.sort. */
static void sort_desc(int32_t* idx, int32_t* tmp, const double* key, int64_t n) {
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      const int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, o = lo;
      while (i < mid && j < hi) {
        const double a = key[idx[i]], b = key[idx[j]];
        /* comparator (a, b) => key[b] - key[a] || a - b: take from the right only when strictly greater */
        const double diff = b - a;
        tmp[o++] = (diff > 0 || (!(diff != 0 && diff == diff) && idx[j] < idx[i])) ? idx[j++] : idx[i++];
      }
      while (i < mid) tmp[o++] = idx[i++];
      while (j < hi) tmp[o++] = idx[j++];
    }
    memcpy(idx, tmp, (size_t)n * sizeof(int32_t));
  }
}

int qg_gptq(const float* wT, int64_t n, int64_t k, const double* hessian, int bits, int bs, int symmetric, int clip_search,
            double damp_ratio, int act_order, int static_groups_opt, int zero_dead, uint8_t* codes, float* scales,
            uint8_t* zero_points, void* ws, int threads) {
  if (!wT || !hessian || !codes || !scales || !zero_points || !ws || n < 0 || k < 1 || k > 2147483647) return QG_EINVAL;
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8) || bs < 8 || bs > QG_MAX_BLOCK || bs % 8) return QG_EINVAL;
  if (!(damp_ratio >= 0)) return QG_EINVAL;
  const qg_dispatch* d = qg_dispatch_table();
  const int static_groups = act_order || static_groups_opt;
  const int64_t bpr = (k + bs - 1) / bs;
  const int64_t b2 = batch_inner(bs, static_groups), b1 = batch_outer(b2);
  uint8_t* base = (uint8_t*)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  double* h = (double*)base; base += align64(k * k * 8);
  double* wp = (double*)base; base += align64(n * k * 8);
  double* err = (double*)base; base += align64(n * (256 + QG_MAX_BLOCK) * 8);
  double* scratch = (double*)base; base += align64((NB > IB ? NB : IB) * k * 8 * 2);
  double* diag = (double*)base; base += align64(k * 8);
  int32_t* perm = (int32_t*)base; base += align64(k * 4);
  int32_t* ptmp = (int32_t*)base; base += align64(k * 4);
  uint8_t* dead = base;

  double mean_diag = 0;
  for (int64_t i = 0; i < k; i++) {
    const double hii = hessian[i * k + i];
    diag[i] = 0;
    dead[i] = 0;
    if (hii > 0) {
      diag[i] = hii;
      mean_diag += hii / (double)k;
    } else {
      dead[i] = 1;
      mean_diag += 1 / (double)k;
    }
  }
  for (int64_t i = 0; i < k; i++) perm[i] = (int32_t)i;
  if (act_order) sort_desc(perm, ptmp, diag, k);

  /* Damped, permuted Hessian written half-turned (J H J), Cholesky, inverse, half-turned back. */
  int ok = 0;
  double damp = damp_ratio * mean_diag;
  for (int attempt = 0; attempt < 8 && !ok; attempt++) {
    for (int64_t i = 0; i < k; i++) {
      const int64_t pi = perm[i];
      double* row = h + (k - 1 - i) * k;
      for (int64_t j = 0; j < k; j++) {
        const int64_t pj = perm[j];
        row[k - 1 - j] = dead[pi] || dead[pj] ? (pi == pj ? 1.0 : 0.0) : hessian[pi * k + pj];
      }
      row[k - 1 - i] = row[k - 1 - i] + damp;
    }
    ok = cholesky_lower(d, h, k, scratch, threads);
    if (!ok) {
      const double next = 1e-6 * mean_diag;
      damp = damp > 0 ? damp * 10 : (next != 0 && next == next ? next : 1e-6);
    }
  }
  if (!ok) return QG_ENOTPD;
  invert_lower(d, h, k, scratch, scratch + IB * k, threads);
  rotate_half_turn(h, k);

  for (int64_t r = 0; r < n; r++)
    for (int64_t i = 0; i < k; i++) {
      const int64_t col = perm[i];
      wp[r * k + i] = zero_dead && dead[col] ? 0.0 : (double)wT[r * k + col];
    }
  if (static_groups) { /* parameters from the original weights (dead columns zeroed when asked) */
    float* orig = (float*)scratch; /* one row at a time (the inverse's scratch is free now) */
    for (int64_t r = 0; r < n; r++) {
      for (int64_t i = 0; i < k; i++) orig[i] = zero_dead && dead[i] ? 0.0f : wT[r * k + i];
      qg_quantize_int_ref(orig, k, bits, bs, symmetric != 0, clip_search != 0, codes + r * bpr * bs, scales + r * bpr,
                          zero_points + r * bpr, 0, 1);
    }
  }
  sweep_ctx c = {d, h, wp, err, perm, n, k, bpr, b1, b2, bits, bs, symmetric != 0, clip_search != 0, static_groups,
                 codes, scales, zero_points};
  qg_parallel_for(sweep_task, &c, (n + RT - 1) / RT, 1, threads);

  const int64_t tail = k - (bpr - 1) * bs;
  if (tail < bs)
    for (int64_t r = 0; r < n; r++) {
      const int64_t bi = r * bpr + bpr - 1;
      memset(codes + bi * bs + tail, zero_points[bi], (size_t)(bs - tail));
    }
  return QG_OK;
}
