/* Scalar references (*_ref): the oracles every SIMD kernel is tested against. Float32 arithmetic in
 * the same order as src/quantize/blockwise.ts; compile with -ffp-contract=off. */
#include <string.h>
#include "qg_internal.h"

/* NormalFloat-4 levels (QLoRA, Dettmers et al. 2023): quantiles of N(0,1) scaled to [-1, 1]. */
const float qg_nf4_table[16] = {-1.0f,
                                -0.6961928009986877f,
                                -0.5250730514526367f,
                                -0.39491748809814453f,
                                -0.28444138169288635f,
                                -0.18477343022823334f,
                                -0.09105003625154495f,
                                0.0f,
                                0.07958029955625534f,
                                0.16093020141124725f,
                                0.24611230194568634f,
                                0.33791524171829224f,
                                0.44070982933044434f,
                                0.5626170039176941f,
                                0.7229568362236023f,
                                1.0f};
/* E2M1: sign in bit 3, two exponent bits (bias 1), one mantissa bit; subnormal 0.5. */
const float qg_e2m1_table[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

static inline float f32_from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t bits_from_f32(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* E4M3 (fn): the code's 7 magnitude bits placed at the top of a float's exponent/mantissa, times
 * 2^120, give the value for normals and subnormals alike. 0x7F/0xFF (NaN) are never produced. */
float qg_e4m3_decode(uint8_t c) {
  float mag = f32_from_bits((uint32_t)(c & 0x7F) << 20) * 1.329227995784916e36f; /* 2^120 */
  return (c & 0x80) ? -mag : mag;
}

uint8_t qg_e4m3_encode(float x) {
  uint8_t sign = (bits_from_f32(x) >> 24) & 0x80;
  float a = __builtin_fabsf(x);
  if (!(a == a)) return 0;
  uint32_t code;
  if (a < 0.015625f) { /* below 2^-6: subnormal steps of 2^-9, round half to even by the 2^23 trick */
    float s = a * 512.0f;
    volatile float big = 8388608.0f;
    code = (uint32_t)((s + big) - big); /* 8 becomes the smallest normal, which is correct */
  } else {
    uint32_t b = bits_from_f32(a);
    b = b + 0x7FFFFu + ((b >> 20) & 1u); /* round the mantissa to 3 bits, ties to even */
    int64_t c = (int64_t)(b >> 20) - ((int64_t)(127 - 7) << 3);
    code = c > 0x7E ? 0x7E : (uint32_t)c;
  }
  return (uint8_t)(sign | code);
}

/* ---------------- integer quantizer (mirror of quantizeBlockwiseRef) ---------------- */

static void block_range(const float* w, int64_t len, float* lo_out, float* hi_out, float* ext_out) {
  float lo = 0.0f, hi = 0.0f, ext = 0.0f;
  for (int64_t i = 0; i < len; i++) {
    const float v = w[i];
    if (__builtin_fabsf(v) > __builtin_fabsf(ext)) ext = v;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  *lo_out = lo; *hi_out = hi; *ext_out = ext;
}

static float encode_block(const float* w, int64_t len, block_params p, float qmax, uint8_t* out) {
  const float inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
  float err = 0.0f;
  for (int64_t i = 0; i < len; i++) {
    const float v = w[i];
    const float q = qg_js_clamp(qg_round_away(v * inv) + p.zp, 0.0f, qmax);
    out[i] = qg_js_u8(q);
    const float d = v - (q - p.zp) * p.scale;
    err = err + d * d;
  }
  return err;
}

void qg_quantize_int_ref(const float* wT, int64_t k, int bits, int bs, int sym, int clip, uint8_t* codes,
                         float* scales, uint8_t* zp, int64_t r0, int64_t r1) {
  const float qmax = (float)((1 << bits) - 1);
  const int64_t bpr = (k + bs - 1) / bs;
  const int nratios = clip ? 16 : 1;
  uint8_t scratch[QG_MAX_BLOCK];
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = wT + row * k + b * bs;
      const int64_t len = (b + 1) * bs <= k ? bs : k - b * bs;
      const int64_t bi = row * bpr + b;
      uint8_t* out = codes + bi * bs;
      float lo, hi, ext;
      block_range(w, len, &lo, &hi, &ext);
      block_params best = params_from_range(lo, hi, ext, bits, sym, qg_clip_ratio(0));
      float best_err = encode_block(w, len, best, qmax, out);
      for (int r = 1; r < nratios; r++) {
        const block_params p = params_from_range(lo, hi, ext, bits, sym, qg_clip_ratio(r));
        const float e = encode_block(w, len, p, qmax, scratch);
        if (e < best_err) {
          best_err = e;
          best = p;
          memcpy(out, scratch, (size_t)len);
        }
      }
      scales[bi] = best.scale;
      zp[bi] = qg_js_u8(best.zp);
      memset(out + len, qg_js_u8(best.zp), (size_t)(bs - len));
    }
  }
}

/* ---------------- integer GEMM reference ---------------- */

void qg_gemm_int_ref(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  const float mid = (float)(1 << (w->bits - 1));
  for (int64_t row = n0; row < n1; row++) {
    for (int64_t mi = 0; mi < m; mi++) {
      const float* xr = x + mi * w->k;
      float acc = 0.0f;
      for (int64_t b = 0; b < w->bpr; b++) {
        const uint8_t* blk = w->packed + row * w->row_bytes + b * w->block_bytes;
        const int64_t bi = row * w->bpr + b;
        const float z = w->zp ? (float)w->zp[bi] : mid;
        const int64_t len = (b + 1) * w->bs <= w->k ? w->bs : w->k - b * w->bs;
        float s = 0.0f;
        for (int64_t i = 0; i < len; i++) s += ((float)qg_get_code(blk, i, w->bits) - z) * xr[b * w->bs + i];
        acc += w->scales[bi] * s;
      }
      y[mi * w->n + row] = acc;
    }
  }
}

/* ---------------- table formats ---------------- */

static const float* lut_of(int fmt, const float* table) {
  switch (fmt) {
    case QG_FMT_NF4: return qg_nf4_table;
    case QG_FMT_FP4:
    case QG_FMT_MXFP4: return qg_e2m1_table;
    case QG_FMT_CODEBOOK: return table;
    default: return NULL;
  }
}

static float lut_value(const qg_weight* w, const uint8_t* blk, int64_t i) {
  if (w->fmt == QG_FMT_FP8) return qg_e4m3_decode(blk[i]);
  return lut_of(w->fmt, w->table)[qg_get_code(blk, i, 4)];
}

void qg_gemm_lut_ref(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  for (int64_t row = n0; row < n1; row++) {
    for (int64_t mi = 0; mi < m; mi++) {
      const float* xr = x + mi * w->k;
      float acc = 0.0f;
      for (int64_t b = 0; b < w->bpr; b++) {
        const uint8_t* blk = w->packed + row * w->row_bytes + b * w->block_bytes;
        const int64_t len = (b + 1) * w->bs <= w->k ? w->bs : w->k - b * w->bs;
        float s = 0.0f;
        for (int64_t i = 0; i < len; i++) s += lut_value(w, blk, i) * xr[b * w->bs + i];
        acc += (w->scales ? w->scales[row * w->bpr + b] : 1.0f) * s;
      }
      y[mi * w->n + row] = acc;
    }
  }
}

/* First index of the nearest of `len` levels (ties keep the lower index). */
static int nearest_level(const float* levels, int len, float v) {
  int best = 0;
  float bd = __builtin_fabsf(v - levels[0]);
  for (int j = 1; j < len; j++) {
    const float d = __builtin_fabsf(v - levels[j]);
    if (d < bd) { bd = d; best = j; }
  }
  return best;
}

static float mx_scale_of(float absmax) {
  /* OCP MX: shared exponent floor(log2(absmax)) - emax(E2M1)=2, as E8M0 (bias 127, 0..254). */
  if (!(absmax > 0.0f)) return f32_from_bits(0x00400000u); /* 2^-127 */
  int e = (int)((bits_from_f32(absmax) >> 23) & 0xFF) - 127; /* subnormal absmax gives -127 */
  int e8 = e - 2 + 127;
  if (e8 < 0) e8 = 0;
  if (e8 > 254) e8 = 254;
  return e8 == 0 ? f32_from_bits(0x00400000u) : f32_from_bits((uint32_t)e8 << 23);
}

void qg_quantize_lut_ref(int fmt, const float* wT, int64_t k, int bs, const float* table, int table_len,
                         uint8_t* packed, float* scales, int64_t r0, int64_t r1) {
  const int64_t bpr = (k + bs - 1) / bs;
  const int code_bits = fmt == QG_FMT_FP8 ? 8 : 4;
  const int64_t block_bytes = qg_block_code_bytes(code_bits, bs);
  const float* levels = lut_of(fmt, table);
  const int nlev = fmt == QG_FMT_CODEBOOK ? table_len : 16;
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = wT + row * k + b * bs;
      const int64_t len = (b + 1) * bs <= k ? bs : k - b * bs;
      const int64_t bi = row * bpr + b;
      uint8_t* out = packed + bi * block_bytes;
      float amax = 0.0f;
      for (int64_t i = 0; i < len; i++) amax = __builtin_fabsf(w[i]) > amax ? __builtin_fabsf(w[i]) : amax;
      float scale = 1.0f;
      switch (fmt) {
        case QG_FMT_NF4: scale = amax; break;
        case QG_FMT_FP4: scale = amax / 6.0f; break;
        case QG_FMT_MXFP4: scale = mx_scale_of(amax); break;
        case QG_FMT_FP8: scale = amax / 448.0f; break;
        default: break;
      }
      if (scales) scales[bi] = fmt == QG_FMT_CODEBOOK ? 1.0f : scale;
      const float inv = scale == 0.0f ? 0.0f : 1.0f / scale;
      memset(out, 0, (size_t)block_bytes);
      for (int64_t i = 0; i < bs; i++) {
        const float v = i < len ? w[i] * inv : 0.0f;
        unsigned c;
        if (fmt == QG_FMT_FP8) c = qg_e4m3_encode(v);
        else c = (unsigned)nearest_level(levels, nlev, fmt == QG_FMT_CODEBOOK ? (i < len ? w[i] : levels[0]) : v);
        if (code_bits == 8) out[i] = (uint8_t)c;
        else out[i >> 1] |= (uint8_t)(c << ((i & 1) * 4));
      }
    }
  }
}

/* ---------------- float32 ---------------- */

void qg_gemm_f32_ref(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int64_t n0,
                     int64_t n1) {
  for (int64_t row = n0; row < n1; row++)
    for (int64_t mi = 0; mi < m; mi++) {
      float acc = 0.0f;
      for (int64_t i = 0; i < k; i++) acc += w[row * k + i] * x[mi * k + i];
      y[mi * n + row] = acc;
    }
}

float qg_read_sum_ref(const float* buf, int64_t count) {
  float s = 0.0f;
  for (int64_t i = 0; i < count; i++) s += buf[i];
  return s;
}

/* y[row] = sum over blocks of s * db * (dot - z * sq): the block's products add up in int32, then one
 * conversion and one scaling per block. Bounds: a block has at most 256 products of |15 x 127| (and
 * z * sq at most 15 x 256 x 127), so |dot - z * sq| < 2^20: int32 is exact, and so is its conversion to
 * float (< 2^24). */
void qg_gemv_int4_q8_ref(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1) {
  const int64_t chunks_per_block = w->bs / 32;
  for (int64_t row = n0; row < n1; row++) {
    float acc = 0.0f;
    for (int64_t b = 0; b < w->bpr; b++) {
      const int64_t bi = row * w->bpr + b;
      const int32_t z = w->zp ? w->zp[bi] : 8;
      const uint8_t* q = w->packed + row * w->row_bytes + b * w->block_bytes;
      const int8_t* xq = a->xq + b * w->bs;
      int32_t dot = 0;
      for (int64_t c = 0; c < chunks_per_block; c++, q += 16, xq += 32)
        for (int i = 0; i < 16; i++) dot += (q[i] & 15) * xq[i] + (q[i] >> 4) * xq[16 + i];
      acc += (w->scales[bi] * a->db[b]) * (float)(dot - z * a->sq[b]);
    }
    y[row] = acc;
  }
}

/* M activation rows: the GEMV reference once per row (same sums, same order). */
void qg_gemm_int4_q8_ref(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t n0, int64_t n1) {
  for (int64_t mi = 0; mi < m; mi++) qg_gemv_int4_q8_ref(w, &acts[mi], y + mi * w->n, n0, n1);
}

void qg_quant_act_q8_ref(const float* x, int64_t k, int64_t blocks, int bs, int8_t* xq, float* db, int32_t* sq) {
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t i0 = b * bs;
    float amax = 0.0f;
    for (int64_t i = i0; i < i0 + bs && i < k; i++) amax = __builtin_fabsf(x[i]) > amax ? __builtin_fabsf(x[i]) : amax;
    const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < bs; i++) {
      const int64_t src = i0 + i;
      int q = src < k ? (int)qg_round_away(x[src] * inv) : 0;
      q = q > 127 ? 127 : q < -127 ? -127 : q;
      xq[i0 + (i & ~31) + (i & 1) * 16 + ((i & 31) >> 1)] = (int8_t)q;
      sum += q;
    }
    db[b] = d;
    sq[b] = sum;
  }
}

void qg_fill_ref(qg_dispatch* d) {
  d->quant_act_q8 = qg_quant_act_q8_ref;
  d->gemv_int4_q8 = qg_gemv_int4_q8_ref;
  d->gemv_int4_q8_il = NULL; /* the interleaved layout has SIMD readers only (an ISA cap must clear it too) */
  d->gemm_int4_q8 = qg_gemm_int4_q8_ref;
  d->isa = "scalar";
  for (int b = 0; b < 9; b++) d->gemm_int[b] = d->gemv_int[b] = (b == 2 || b == 3 || b == 4 || b == 8) ? qg_gemm_int_ref : NULL;
  for (int f = 0; f < QG_FMT_COUNT; f++) d->gemm_lut[f] = NULL;
  d->gemm_lut[QG_FMT_NF4] = d->gemm_lut[QG_FMT_FP4] = d->gemm_lut[QG_FMT_MXFP4] = d->gemm_lut[QG_FMT_FP8] =
      d->gemm_lut[QG_FMT_CODEBOOK] = qg_gemm_lut_ref;
  d->rank_update = qg_rank_update_ref;
  d->quant_int = qg_quantize_int_ref;
  d->gemm_f32 = qg_gemm_f32_ref;
  d->read_sum = qg_read_sum_ref;
}
