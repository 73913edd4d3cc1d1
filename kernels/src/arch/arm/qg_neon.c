/* AArch64 Advanced SIMD (NEON) kernels, with the int8 dot-product instructions (sdot) for int4 x
 * int8 activations where the CPU has them (HWCAP_ASIMDDP, read at run time; NEON itself is part of
 * every AArch64 CPU). Same coverage as the x86 paths: the integer quantizer (byte-identical to
 * qg_quantize_int_ref), GEMV / GEMM on packed int2/3/4/8, NF4/FP4/MXFP4/codebook and FP8 codes,
 * float32 GEMM, the bandwidth probe and the int4 x int8-activation GEMV.
 *
 * GEMV (M = 1, bs % 32 == 0): 32 codes at a time decoded to natural order in registers (nibble zips,
 * table shuffles and variable shifts for int2 / int3, 16-entry float tables through tbl over 64
 * bytes), multiplied with x by FMA, one scale per block.
 * GEMM (M > 1, or bs % 32 != 0): four weight rows decoded once per K tile into scaled floats on the
 * stack, then multiplied against four activation rows at a time (16 accumulators of the 32 vector
 * registers).
 * Every kernel ends with the same scalar tail as its reference (the partial last block). */
#include "../../qg_internal.h"
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

#define QG_NEON_IN static inline __attribute__((always_inline))
#if defined(__ARM_FEATURE_DOTPROD) /* the baseline has it (e.g. Apple silicon): no attribute needed */
#define QG_NEON_DOT
#define qg_sdot vdotq_s32
#elif defined(__clang__) /* clang before 16 declares vdotq_s32 only under -march=...+dotprod */
#define QG_NEON_DOT __attribute__((target("dotprod")))
QG_NEON_DOT static inline __attribute__((always_inline)) int32x4_t qg_sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
  __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
  return acc;
}
#else
#define QG_NEON_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#define qg_sdot vdotq_s32
#endif

enum { NK_I2 = 2, NK_I3 = 3, NK_I4 = 4, NK_I8 = 8, NK_LUT4 = 16, NK_FP8 = 17 };
#define QG_NEON_KC 512    /* GEMM: weights per decoded row tile */
#define QG_NEON_WT_PAD 16 /* GEMM: floats of padding per decoded row */
#define QG_NEON_MR 4      /* GEMM: activation rows per pass */

/* ---------------- integer quantizer: byte-identical to qg_quantize_int_ref ---------------- */

/* Min, max (both starting at 0, updated on strict comparisons as block_range() does, so NaN and -0
 * never enter) and the first element of largest magnitude. */
QG_NEON_IN void range_neon(const float* w, int64_t len, float* lo_out, float* hi_out, float* ext_out) {
  float32x4_t lo = vdupq_n_f32(0.0f), hi = lo, am = lo;
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    const float32x4_t v = vld1q_f32(w + i), a = vabsq_f32(v);
    lo = vbslq_f32(vcltq_f32(v, lo), v, lo);
    hi = vbslq_f32(vcgtq_f32(v, hi), v, hi);
    am = vbslq_f32(vcgtq_f32(a, am), a, am);
  }
  float l[4], h[4], a[4];
  vst1q_f32(l, lo); vst1q_f32(h, hi); vst1q_f32(a, am);
  float lo1 = 0.0f, hi1 = 0.0f, amax = 0.0f;
  for (int j = 0; j < 4; j++) {
    lo1 = l[j] < lo1 ? l[j] : lo1;
    hi1 = h[j] > hi1 ? h[j] : hi1;
    amax = a[j] > amax ? a[j] : amax;
  }
  for (int64_t j = i; j < len; j++) { /* scalar tail */
    lo1 = w[j] < lo1 ? w[j] : lo1;
    hi1 = w[j] > hi1 ? w[j] : hi1;
    amax = __builtin_fabsf(w[j]) > amax ? __builtin_fabsf(w[j]) : amax;
  }
  float ext = 0.0f; /* +0 when the block is all zeros, as the reference's initial value */
  if (amax > 0.0f) {
    const float32x4_t target = vdupq_n_f32(amax);
    int64_t j = 0;
    for (; j + 4 <= len; j += 4)
      if (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(w + j)), target))) break;
    for (; j < len; j++)
      if (__builtin_fabsf(w[j]) == amax) { ext = w[j]; break; }
  }
  *lo_out = lo1; *hi_out = hi1; *ext_out = ext;
}

/* Codes of one block: round half away (FRINTA is exactly qg_round_away), add the zero point, clamp
 * (FMAX/FMIN keep a NaN, which FCVTZU stores as 0, as qg_js_u8 does). */
QG_NEON_IN void encode_rtn_neon(const float* w, int64_t len, block_params p, float qmax, uint8_t* out) {
  const float inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
  const float32x4_t vinv = vdupq_n_f32(inv), vzp = vdupq_n_f32(p.zp), vq = vdupq_n_f32(qmax), zero = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const float32x4_t r0 = vrndaq_f32(vmulq_f32(vld1q_f32(w + i), vinv));
    const float32x4_t r1 = vrndaq_f32(vmulq_f32(vld1q_f32(w + i + 4), vinv));
    const uint32x4_t q0 = vcvtq_u32_f32(vminq_f32(vq, vmaxq_f32(zero, vaddq_f32(r0, vzp))));
    const uint32x4_t q1 = vcvtq_u32_f32(vminq_f32(vq, vmaxq_f32(zero, vaddq_f32(r1, vzp))));
    vst1_u8(out + i, vmovn_u16(vcombine_u16(vmovn_u32(q0), vmovn_u32(q1))));
  }
  for (; i < len; i++) out[i] = qg_js_u8(qg_js_clamp(qg_round_away(w[i] * inv) + p.zp, 0.0f, qmax));
}

static void quantize_int_neon(const float* wT, int64_t k, int bits, int bs, int sym, int clip, uint8_t* codes,
                              float* scales, uint8_t* zp, int64_t r0, int64_t r1) {
  const float qmax = (float)((1 << bits) - 1);
  const int64_t bpr = (k + bs - 1) / bs;
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = wT + row * k + b * bs;
      const int64_t len = (b + 1) * bs <= k ? bs : k - b * bs;
      const int64_t bi = row * bpr + b;
      float lo, hi, ext;
      range_neon(w, len, &lo, &hi, &ext);
      block_params best = params_from_range(lo, hi, ext, bits, sym, 1.0f);
      if (clip) {
        /* The 16 clip ratios in four vectors, one per lane; each lane sums its squared errors in
         * element order with separate multiply and add, so every candidate's error equals the
         * reference's bit for bit. (code - zp) is min(qmax - zp, max(-zp, r)): exact integers. */
        float s[16], nz[16], qz[16], inv[16];
        block_params ps[16];
        for (int r = 0; r < 16; r++) {
          ps[r] = params_from_range(lo, hi, ext, bits, sym, qg_clip_ratio(r));
          s[r] = ps[r].scale;
          nz[r] = -ps[r].zp;
          qz[r] = qmax - ps[r].zp;
          inv[r] = ps[r].scale == 0.0f ? 0.0f : 1.0f / ps[r].scale;
        }
        float32x4_t vs[4], vnz[4], vqz[4], vinv[4], err[4];
        for (int h = 0; h < 4; h++) {
          vs[h] = vld1q_f32(s + 4 * h);
          vnz[h] = vld1q_f32(nz + 4 * h);
          vqz[h] = vld1q_f32(qz + 4 * h);
          vinv[h] = vld1q_f32(inv + 4 * h);
          err[h] = vdupq_n_f32(0.0f);
        }
        for (int64_t i = 0; i < len; i++) {
          const float32x4_t v = vdupq_n_f32(w[i]);
          for (int h = 0; h < 4; h++) {
            const float32x4_t r = vrndaq_f32(vmulq_f32(v, vinv[h]));
            const float32x4_t q = vminq_f32(vqz[h], vmaxq_f32(vnz[h], r));
            const float32x4_t d = vsubq_f32(v, vmulq_f32(q, vs[h]));
            err[h] = vaddq_f32(err[h], vmulq_f32(d, d));
          }
        }
        float e[16];
        for (int h = 0; h < 4; h++) vst1q_f32(e + 4 * h, err[h]);
        int bestr = 0;
        float best_err = e[0];
        for (int r = 1; r < 16; r++)
          if (e[r] < best_err) { best_err = e[r]; bestr = r; }
        best = ps[bestr];
      }
      uint8_t* out = codes + bi * bs;
      encode_rtn_neon(w, len, best, qmax, out);
      scales[bi] = best.scale;
      zp[bi] = qg_js_u8(best.zp);
      memset(out + len, qg_js_u8(best.zp), (size_t)(bs - len));
    }
  }
}

/* ---------------- decoders ---------------- */

static const float* neon_table(const qg_weight* w) {
  return w->fmt == QG_FMT_NF4 ? qg_nf4_table : w->fmt == QG_FMT_CODEBOOK ? w->table : qg_e2m1_table;
}

/* The 16 floats of a table as 64 bytes for tbl. */
QG_NEON_IN uint8x16x4_t load_table(const float* t) {
  uint8x16x4_t r;
  r.val[0] = vreinterpretq_u8_f32(vld1q_f32(t));
  r.val[1] = vreinterpretq_u8_f32(vld1q_f32(t + 4));
  r.val[2] = vreinterpretq_u8_f32(vld1q_f32(t + 8));
  r.val[3] = vreinterpretq_u8_f32(vld1q_f32(t + 12));
  return r;
}

/* Four 4-bit codes in the u32 lanes of c -> their table floats: byte index 4c + {0,1,2,3}. */
QG_NEON_IN float32x4_t lut4_u32(uint32x4_t c, uint8x16x4_t tbl) {
  const uint32x4_t idx = vmlaq_u32(vdupq_n_u32(0x03020100u), c, vdupq_n_u32(0x04040404u));
  return vreinterpretq_f32_u8(vqtbl4q_u8(tbl, vreinterpretq_u8_u32(idx)));
}

/* E4M3 codes sign-extended to s32 lanes -> values: the 7 magnitude bits at bit 20 and the sign at
 * bit 31 form a float that, times 2^120, is the code's value (as qg_e4m3_decode). */
QG_NEON_IN float32x4_t fp8_s32(int32x4_t c) {
  const uint32x4_t b = vandq_u32(vreinterpretq_u32_s32(vshlq_n_s32(c, 20)), vdupq_n_u32(0x87F00000u));
  return vmulq_f32(vreinterpretq_f32_u32(b), vdupq_n_f32(1.329227995784916e36f)); /* 2^120 */
}

QG_NEON_IN void s16_to_f32(int16x8_t c, float32x4_t* lo, float32x4_t* hi) {
  *lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(c)));
  *hi = vcvtq_f32_s32(vmovl_high_s16(c));
}

/* 32 codes of an integer block (group g of 32) as (code - z), natural order, in four int16x8. */
QG_NEON_IN void dec32_int(int kind, const uint8_t* blk, int64_t g, int16x8_t z, int16x8_t c[4]) {
  uint8x16_t a, b;
  switch (kind) {
    case NK_I8:
      a = vld1q_u8(blk + 32 * g);
      b = vld1q_u8(blk + 32 * g + 16);
      break;
    case NK_I4: {
      const uint8x16_t v = vld1q_u8(blk + 16 * g);
      const uint8x16_t lo = vandq_u8(v, vdupq_n_u8(15)), hi = vshrq_n_u8(v, 4);
      a = vzip1q_u8(lo, hi);
      b = vzip2q_u8(lo, hi);
      break;
    }
    case NK_I2: {
      static const uint8_t ia[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
      static const int8_t sh[16] = {0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6};
      const uint8x16_t v = vcombine_u8(vld1_u8(blk + 8 * g), vdup_n_u8(0));
      const uint8x16_t i0 = vld1q_u8(ia), i1 = vaddq_u8(i0, vdupq_n_u8(4)), m = vdupq_n_u8(3);
      const int8x16_t s = vld1q_s8(sh);
      a = vandq_u8(vshlq_u8(vqtbl1q_u8(v, i0), s), m);
      b = vandq_u8(vshlq_u8(vqtbl1q_u8(v, i1), s), m);
      break;
    }
    default: { /* NK_I3: 12 bytes; lane l of 8 codes reads the 16 bits at byte 3l/8, shifted by 3l%8 */
      static const uint8_t ib[16] = {0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3};
      static const int16_t sh[8] = {0, -3, -6, -1, -4, -7, -2, -5};
      const uint8_t* p = blk + 12 * g;
      uint32_t t;
      memcpy(&t, p + 8, 4);
      const uint8x16_t v = vcombine_u8(vld1_u8(p), vreinterpret_u8_u32(vset_lane_u32(t, vdup_n_u32(0), 0)));
      const uint8x16_t i0 = vld1q_u8(ib);
      const int16x8_t s = vld1q_s16(sh);
      const uint16x8_t m = vdupq_n_u16(7);
      for (int q = 0; q < 4; q++) {
        const uint16x8_t u = vreinterpretq_u16_u8(vqtbl1q_u8(v, vaddq_u8(i0, vdupq_n_u8((uint8_t)(3 * q)))));
        c[q] = vsubq_s16(vreinterpretq_s16_u16(vandq_u16(vshlq_u16(u, s), m)), z);
      }
      return;
    }
  }
  c[0] = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(a))), z);
  c[1] = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(a)), z);
  c[2] = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(b))), z);
  c[3] = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(b)), z);
}

/* Codes 8g..8g+7 of a block as two float vectors (integer formats: code - z; tables: values). */
QG_NEON_IN void dec8(int kind, const uint8_t* blk, int64_t g, int32x4_t z, uint8x16x4_t tbl, float32x4_t v[2]) {
  uint32_t u = 0;
  switch (kind) {
    case NK_I8: {
      const int16x8_t c = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vld1_u8(blk + 8 * g))), vmovq_n_s16((int16_t)vgetq_lane_s32(z, 0)));
      s16_to_f32(c, &v[0], &v[1]);
      return;
    }
    case NK_FP8: {
      const int16x8_t c = vmovl_s8(vld1_s8((const int8_t*)blk + 8 * g));
      v[0] = fp8_s32(vmovl_s16(vget_low_s16(c)));
      v[1] = fp8_s32(vmovl_high_s16(c));
      return;
    }
    case NK_I4:
    case NK_LUT4: memcpy(&u, blk + 4 * g, 4); break;
    case NK_I2: {
      uint16_t h;
      memcpy(&h, blk + 2 * g, 2);
      u = h;
      break;
    }
    default: {
      const uint8_t* p = blk + 3 * g;
      u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    }
  }
  const int bits = kind == NK_LUT4 ? 4 : kind;
  const int32x4_t sh0 = {0, -bits, -2 * bits, -3 * bits}, sh1 = vsubq_s32(sh0, vdupq_n_s32(4 * bits));
  const uint32x4_t m = vdupq_n_u32((1u << bits) - 1), uv = vdupq_n_u32(u);
  const uint32x4_t c0 = vandq_u32(vshlq_u32(uv, sh0), m), c1 = vandq_u32(vshlq_u32(uv, sh1), m);
  if (kind == NK_LUT4) {
    v[0] = lut4_u32(c0, tbl);
    v[1] = lut4_u32(c1, tbl);
  } else {
    v[0] = vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(c0), z));
    v[1] = vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(c1), z));
  }
}

/* Scalar value of code i (partial last block), as the references compute it. */
static float scalar_code(int kind, const qg_weight* w, const uint8_t* blk, int64_t i, float z) {
  if (kind == NK_FP8) return qg_e4m3_decode(blk[i]);
  if (kind == NK_LUT4) return neon_table(w)[qg_get_code(blk, i, 4)];
  return (float)qg_get_code(blk, i, w->bits) - z;
}
QG_NEON_IN float zp_of(int kind, const qg_weight* w, int64_t bi) {
  if (kind >= NK_LUT4) return 0.0f;
  return w->zp ? (float)w->zp[bi] : (float)(1 << (w->bits - 1));
}
QG_NEON_IN float scale_of(const qg_weight* w, int64_t bi) { return w->scales ? w->scales[bi] : 1.0f; }

/* ---------------- GEMV (M = 1, bs % 32 == 0) ---------------- */

/* sum over one block of value(code) * x, as a vector of four partial sums. */
QG_NEON_IN float32x4_t block_dot(int kind, const uint8_t* blk, int64_t groups, const float* x, float z,
                                 uint8x16x4_t tbl) {
  float32x4_t t0 = vdupq_n_f32(0.0f), t1 = t0, t2 = t0, t3 = t0;
  const int16x8_t z16 = vdupq_n_s16((int16_t)z);
  for (int64_t g = 0; g < groups; g++) {
    const float* xg = x + 32 * g;
    if (kind == NK_LUT4) {
      const uint8x16_t v = vld1q_u8(blk + 16 * g);
      const uint8x16_t lo = vandq_u8(v, vdupq_n_u8(15)), hi = vshrq_n_u8(v, 4);
      const uint8x16_t c[2] = {vzip1q_u8(lo, hi), vzip2q_u8(lo, hi)};
      for (int h = 0; h < 2; h++) {
        const uint16x8_t w0 = vmovl_u8(vget_low_u8(c[h])), w1 = vmovl_high_u8(c[h]);
        const float* xh = xg + 16 * h;
        t0 = vfmaq_f32(t0, lut4_u32(vmovl_u16(vget_low_u16(w0)), tbl), vld1q_f32(xh));
        t1 = vfmaq_f32(t1, lut4_u32(vmovl_high_u16(w0), tbl), vld1q_f32(xh + 4));
        t2 = vfmaq_f32(t2, lut4_u32(vmovl_u16(vget_low_u16(w1)), tbl), vld1q_f32(xh + 8));
        t3 = vfmaq_f32(t3, lut4_u32(vmovl_high_u16(w1), tbl), vld1q_f32(xh + 12));
      }
    } else if (kind == NK_FP8) {
      for (int h = 0; h < 2; h++) {
        const int8x16_t c = vld1q_s8((const int8_t*)blk + 32 * g + 16 * h);
        const int16x8_t w0 = vmovl_s8(vget_low_s8(c)), w1 = vmovl_high_s8(c);
        const float* xh = xg + 16 * h;
        t0 = vfmaq_f32(t0, fp8_s32(vmovl_s16(vget_low_s16(w0))), vld1q_f32(xh));
        t1 = vfmaq_f32(t1, fp8_s32(vmovl_high_s16(w0)), vld1q_f32(xh + 4));
        t2 = vfmaq_f32(t2, fp8_s32(vmovl_s16(vget_low_s16(w1))), vld1q_f32(xh + 8));
        t3 = vfmaq_f32(t3, fp8_s32(vmovl_high_s16(w1)), vld1q_f32(xh + 12));
      }
    } else {
      int16x8_t c[4];
      dec32_int(kind, blk, g, z16, c);
      for (int q = 0; q < 4; q++) {
        float32x4_t lo, hi;
        s16_to_f32(c[q], &lo, &hi);
        if (q & 1) {
          t2 = vfmaq_f32(t2, lo, vld1q_f32(xg + 8 * q));
          t3 = vfmaq_f32(t3, hi, vld1q_f32(xg + 8 * q + 4));
        } else {
          t0 = vfmaq_f32(t0, lo, vld1q_f32(xg + 8 * q));
          t1 = vfmaq_f32(t1, hi, vld1q_f32(xg + 8 * q + 4));
        }
      }
    }
  }
  return vaddq_f32(vaddq_f32(t0, t1), vaddq_f32(t2, t3));
}

QG_NEON_IN void gemv_neon(int kind, const qg_weight* w, const float* x, float* y, int64_t n0, int64_t n1) {
  const int64_t bs = w->bs, groups = bs / 32, full = w->k / bs;
  uint8x16x4_t tbl;
  memset(&tbl, 0, sizeof tbl);
  if (kind == NK_LUT4) tbl = load_table(neon_table(w));
  for (int64_t row = n0; row < n1; row++) {
    const uint8_t* p = w->packed + row * w->row_bytes;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < full; b++) {
      const int64_t bi = row * w->bpr + b;
      const float32x4_t t = block_dot(kind, p + b * w->block_bytes, groups, x + b * bs, zp_of(kind, w, bi), tbl);
      acc = vfmaq_f32(acc, t, vdupq_n_f32(scale_of(w, bi)));
    }
    float t = vaddvq_f32(acc);
    if (full < w->bpr) { /* scalar tail: the partial last block */
      const int64_t bi = row * w->bpr + full, len = w->k - full * bs;
      const uint8_t* blk = p + full * w->block_bytes;
      const float z = zp_of(kind, w, bi);
      float a = 0.0f;
      for (int64_t i = 0; i < len; i++) a += scalar_code(kind, w, blk, i, z) * x[full * bs + i];
      t += scale_of(w, bi) * a;
    }
    y[row] = t;
  }
}

/* ---------------- GEMM (M > 1, or any block size) ---------------- */

/* Weights [kb, kb+kc) of one row, scaled, into out (kb and kc whole blocks except at the end of K). */
QG_NEON_IN void decode_row(int kind, const qg_weight* w, int64_t row, int64_t kb, int64_t kc, uint8x16x4_t tbl,
                           float* out) {
  const int64_t bs = w->bs;
  for (int64_t i0 = 0; i0 < kc; i0 += bs) {
    const int64_t b = (kb + i0) / bs, bi = row * w->bpr + b, len = kc - i0 < bs ? kc - i0 : bs;
    const uint8_t* blk = w->packed + row * w->row_bytes + b * w->block_bytes;
    const float s = scale_of(w, bi), z = zp_of(kind, w, bi);
    float* o = out + i0;
    if (len < bs) { /* scalar tail: the partial last block */
      for (int64_t i = 0; i < len; i++) o[i] = scalar_code(kind, w, blk, i, z) * s;
      continue;
    }
    const float32x4_t vs = vdupq_n_f32(s);
    const int32x4_t vz = vdupq_n_s32((int32_t)z);
    for (int64_t g = 0; g < bs / 8; g++) {
      float32x4_t v[2];
      dec8(kind, blk, g, vz, tbl, v);
      vst1q_f32(o + 8 * g, vmulq_f32(v[0], vs));
      vst1q_f32(o + 8 * g + 4, vmulq_f32(v[1], vs));
    }
  }
}

QG_NEON_IN void gemm_neon(int kind, const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  const int64_t k = w->k, bs = w->bs, kcmax = bs * (QG_NEON_KC / bs > 0 ? QG_NEON_KC / bs : 1);
  float wt[4][(QG_NEON_KC > QG_MAX_BLOCK ? QG_NEON_KC : QG_MAX_BLOCK) + QG_NEON_WT_PAD] __attribute__((aligned(64)));
  uint8x16x4_t tbl;
  memset(&tbl, 0, sizeof tbl);
  if (kind == NK_LUT4) tbl = load_table(neon_table(w));
  for (int64_t row = n0; row < n1; row += 4) {
    const int64_t nr = n1 - row < 4 ? n1 - row : 4;
    for (int64_t kb = 0; kb < k; kb += kcmax) {
      const int64_t kc = k - kb < kcmax ? k - kb : kcmax;
      for (int r = 0; r < 4; r++) {
        if (r < nr) decode_row(kind, w, row + r, kb, kc, tbl, wt[r]);
        else memcpy(wt[r], wt[nr - 1], (size_t)kc * sizeof(float));
      }
      const int64_t kv = kc & ~(int64_t)3;
      for (int64_t mi = 0; mi < m; mi += QG_NEON_MR) {
        const int64_t mr = m - mi < QG_NEON_MR ? m - mi : QG_NEON_MR;
        const float* xr[QG_NEON_MR];
        for (int j = 0; j < QG_NEON_MR; j++) xr[j] = x + (mi + (j < mr ? j : mr - 1)) * k + kb;
        float32x4_t acc[4][QG_NEON_MR];
        for (int r = 0; r < 4; r++)
          for (int j = 0; j < QG_NEON_MR; j++) acc[r][j] = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < kv; i += 4) {
          const float32x4_t w0 = vld1q_f32(wt[0] + i), w1 = vld1q_f32(wt[1] + i);
          const float32x4_t w2 = vld1q_f32(wt[2] + i), w3 = vld1q_f32(wt[3] + i);
          for (int j = 0; j < QG_NEON_MR; j++) {
            const float32x4_t xv = vld1q_f32(xr[j] + i);
            acc[0][j] = vfmaq_f32(acc[0][j], w0, xv);
            acc[1][j] = vfmaq_f32(acc[1][j], w1, xv);
            acc[2][j] = vfmaq_f32(acc[2][j], w2, xv);
            acc[3][j] = vfmaq_f32(acc[3][j], w3, xv);
          }
        }
        for (int r = 0; r < nr; r++)
          for (int j = 0; j < mr; j++) {
            float t = vaddvq_f32(acc[r][j]);
            for (int64_t i = kv; i < kc; i++) t += wt[r][i] * xr[j][i]; /* scalar tail */
            float* o = y + (mi + j) * w->n + row + r;
            *o = kb == 0 ? t : *o + t;
          }
      }
    }
  }
}

/* GEMV for bs % 32 == 0, else the GEMM body (which handles any M and any bs). */
#define QG_NEON_VARIANT(name, kind)                                                                          \
  static void gemm_##name##_neon(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) { \
    if (m == 1 && w->bs % 32 == 0) gemv_neon(kind, w, x, y, n0, n1);                                        \
    else gemm_neon(kind, w, x, m, y, n0, n1);                                                                  \
  }
QG_NEON_VARIANT(i2, NK_I2)
QG_NEON_VARIANT(i3, NK_I3)
QG_NEON_VARIANT(i4, NK_I4)
QG_NEON_VARIANT(i8, NK_I8)
QG_NEON_VARIANT(lut4, NK_LUT4)
QG_NEON_VARIANT(fp8, NK_FP8)
#undef QG_NEON_VARIANT

/* ---------------- int4 x int8 activations ---------------- */

/* acc plus the dot product of one chunk: 16 packed bytes, low nibbles against xq[0..16) (even positions),
 * high nibbles against xq[16..32) (odd positions); the int32x4's lane sum is what counts. */
QG_NEON_IN int32x4_t chunk_dot_mull(int32x4_t acc, const uint8_t* p, const int8_t* xq) {
  const uint8x16_t v = vld1q_u8(p);
  const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
  /* two products of |15 * 127| per int16 lane fit */
  int16x8_t a = vmull_s8(vget_low_s8(lo), vget_low_s8(x0));
  a = vmlal_s8(a, vget_low_s8(hi), vget_low_s8(x1));
  int16x8_t b = vmull_high_s8(lo, x0);
  b = vmlal_high_s8(b, hi, x1);
  return vpadalq_s16(vpadalq_s16(acc, a), b);
}

QG_NEON_DOT QG_NEON_IN int32x4_t chunk_dot_sdot(int32x4_t acc, const uint8_t* p, const int8_t* xq) {
  const uint8x16_t v = vld1q_u8(p);
  const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  return qg_sdot(qg_sdot(acc, lo, vld1q_s8(xq)), hi, vld1q_s8(xq + 16));
}

/* Rows [n0, n1): a block's chunk dots add up in one int32x4 (at most 256 products of |15 x 127|: far
 * inside int32); four blocks at a time are reduced (pairwise adds), converted and scaled together as the
 * reference does per block: s * (db * dot - z * dsb). */
#define QG_NEON_Q8(NAME, ATTR, DOT)                                                                            \
  ATTR static void NAME(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1) {           \
    const int64_t cpb = w->bs / 32, bpr = w->bpr, b4 = bpr & ~(int64_t)3;                                     \
    for (int64_t row = n0; row < n1; row++) {                                                                  \
      const uint8_t* p = w->packed + row * w->row_bytes;                                                       \
      const float* s = w->scales + row * bpr;                                                                  \
      const uint8_t* zr = w->zp ? w->zp + row * bpr : NULL;                                                    \
      float32x4_t acc = vdupq_n_f32(0.0f);                                                                     \
      for (int64_t b = 0; b < b4; b += 4) {                                                                    \
        int32x4_t d[4];                                                                                        \
        for (int q = 0; q < 4; q++) {                                                                          \
          const uint8_t* pb = p + (b + q) * w->block_bytes;                                                    \
          const int8_t* xb = a->xq + (b + q) * w->bs;                                                          \
          int32x4_t t = DOT(vdupq_n_s32(0), pb, xb);                                                           \
          for (int64_t c = 1; c < cpb; c++) t = DOT(t, pb + 16 * c, xb + 32 * c);                              \
          d[q] = t;                                                                                            \
        }                                                                                                      \
        const float32x4_t dot = vcvtq_f32_s32(vpaddq_s32(vpaddq_s32(d[0], d[1]), vpaddq_s32(d[2], d[3])));    \
        float32x4_t zv = vdupq_n_f32(8.0f);                                                                    \
        if (zr) {                                                                                              \
          uint32_t zb;                                                                                         \
          memcpy(&zb, zr + b, 4);                                                                              \
          zv = vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(zb))))));        \
        }                                                                                                      \
        const float32x4_t t = vsubq_f32(vmulq_f32(vld1q_f32(a->db + b), dot), vmulq_f32(zv, vld1q_f32(a->dsb + b))); \
        acc = vfmaq_f32(acc, vld1q_f32(s + b), t);                                                             \
      }                                                                                                        \
      float t = vaddvq_f32(acc);                                                                               \
      for (int64_t b = b4; b < bpr; b++) { /* leftover blocks, one at a time */                               \
        const uint8_t* pb = p + b * w->block_bytes;                                                            \
        const int8_t* xb = a->xq + b * w->bs;                                                                  \
        int32x4_t d = DOT(vdupq_n_s32(0), pb, xb);                                                             \
        for (int64_t c = 1; c < cpb; c++) d = DOT(d, pb + 16 * c, xb + 32 * c);                                \
        const float z = zr ? (float)zr[b] : 8.0f;                                                              \
        t += s[b] * (a->db[b] * (float)vaddvq_s32(d) - z * a->dsb[b]);                                         \
      }                                                                                                        \
      y[row] = t;                                                                                              \
    }                                                                                                          \
  }
QG_NEON_Q8(gemv_int4_q8_neon, , chunk_dot_mull)
QG_NEON_Q8(gemv_int4_q8_sdot, QG_NEON_DOT, chunk_dot_sdot)
#undef QG_NEON_Q8

/* ---------------- int4 x int8 activations, register-tiled (the shape of the x86 q8t kernels) ----------------
 * Four weight rows x up to four activation rows per tile, a chunk (32 codes) per step: the nibbles are
 * unpacked once per tile and used by every activation row; each int32x4 of a chunk's dot product stays
 * in its lanes and is scaled in place by (weight scale x activation scale); lanes are summed once per
 * row. The zero-point term is subtracted once per block (act->dsb). Any bs % 32 == 0. */

/* An int32x4 whose lane sum is sum(lo * x[0..16)) + sum(hi * x[16..32)). */
QG_NEON_IN int32x4_t q8t_dot_mull(int8x16_t lo, int8x16_t hi, const int8_t* xq) {
  const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
  int16x8_t a = vmull_s8(vget_low_s8(lo), vget_low_s8(x0)); /* two products of |15 * 127| per lane fit */
  a = vmlal_s8(a, vget_low_s8(hi), vget_low_s8(x1));
  int16x8_t b = vmull_high_s8(lo, x0);
  b = vmlal_high_s8(b, hi, x1);
  return vpadalq_s16(vpaddlq_s16(a), b);
}
QG_NEON_DOT QG_NEON_IN int32x4_t q8t_dot_sdot(int8x16_t lo, int8x16_t hi, const int8_t* xq) {
  return qg_sdot(qg_sdot(vdupq_n_s32(0), lo, vld1q_s8(xq)), hi, vld1q_s8(xq + 16));
}

#define QG_NEON_Q8T(NAME, ATTR, DOT)                                                                            \
  ATTR QG_NEON_IN void NAME##_tile(const qg_weight* w, const qg_q8_act* acts, const int mr, int64_t r0, int64_t nr, \
                                   float* y) {                                                                  \
    const int64_t bpr = w->bpr, cpb = w->bs / 32, chunks = bpr * cpb;                                          \
    const uint8_t* p[4];                                                                                       \
    const float* s[4];                                                                                         \
    const uint8_t* z[4];                                                                                       \
    for (int r = 0; r < 4; r++) { /* rows past the end repeat the last one; their sums are dropped */          \
      const int64_t row = r0 + (r < nr ? r : nr - 1);                                                          \
      p[r] = w->packed + row * w->row_bytes;                                                                   \
      s[r] = w->scales + row * bpr;                                                                            \
      z[r] = w->zp ? w->zp + row * bpr : NULL;                                                                 \
    }                                                                                                          \
    float32x4_t acc[4][4];                                                                                     \
    for (int r = 0; r < 4; r++)                                                                                \
      for (int a = 0; a < mr; a++) acc[r][a] = vdupq_n_f32(0.0f);                                              \
    for (int64_t j = 0; j < chunks; j++) {                                                                     \
      int8x16_t lo[4], hi[4];                                                                                  \
      float sw[4];                                                                                             \
      for (int r = 0; r < 4; r++) {                                                                            \
        const uint8x16_t v = vld1q_u8(p[r] + 16 * j);                                                          \
        lo[r] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15)));                                              \
        hi[r] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));                                                         \
        sw[r] = s[r][j / cpb];                                                                                 \
      }                                                                                                        \
      for (int a = 0; a < mr; a++) {                                                                           \
        const int8_t* xq = acts[a].xq + 32 * j;                                                                \
        const float dx = acts[a].dx[j];                                                                        \
        for (int r = 0; r < 4; r++)                                                                            \
          acc[r][a] = vfmaq_n_f32(acc[r][a], vcvtq_f32_s32(DOT(lo[r], hi[r], xq)), sw[r] * dx);                \
      }                                                                                                        \
    }                                                                                                          \
    const int64_t b4 = bpr & ~(int64_t)3;                                                                      \
    for (int64_t b = 0; b < b4; b += 4) /* zero points: - s * z * dsb (db * the sum of the block's codes) */               \
      for (int r = 0; r < 4; r++) {                                                                            \
        float32x4_t zv = vdupq_n_f32(8.0f);                                                                    \
        if (z[r]) {                                                                                            \
          uint32_t zb;                                                                                         \
          memcpy(&zb, z[r] + b, 4);                                                                            \
          zv = vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(zb))))));        \
        }                                                                                                      \
        const float32x4_t sz = vmulq_f32(vld1q_f32(s[r] + b), zv);                                             \
        for (int a = 0; a < mr; a++) acc[r][a] = vfmsq_f32(acc[r][a], sz, vld1q_f32(acts[a].dsb + b));         \
      }                                                                                                        \
    for (int r = 0; r < nr; r++)                                                                               \
      for (int a = 0; a < mr; a++) {                                                                           \
        float t = vaddvq_f32(acc[r][a]);                                                                       \
        for (int64_t b = b4; b < bpr; b++) t -= s[r][b] * (z[r] ? (float)z[r][b] : 8.0f) * acts[a].dsb[b];     \
        y[a * w->n + r0 + r] = t;                                                                              \
      }                                                                                                        \
  }                                                                                                            \
  ATTR static void NAME(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t n0, int64_t n1) { \
    for (int64_t r0 = n0; r0 < n1; r0 += 4) {                                                                  \
      const int64_t nr = n1 - r0 < 4 ? n1 - r0 : 4;                                                            \
      for (int64_t mi = 0; mi < m; mi += 4) {                                                                  \
        float* ym = y + mi * w->n;                                                                             \
        switch (m - mi < 4 ? m - mi : 4) { /* constant tile heights, so the accumulators stay in registers */ \
          case 4: NAME##_tile(w, acts + mi, 4, r0, nr, ym); break;                                             \
          case 3: NAME##_tile(w, acts + mi, 3, r0, nr, ym); break;                                             \
          case 2: NAME##_tile(w, acts + mi, 2, r0, nr, ym); break;                                             \
          default: NAME##_tile(w, acts + mi, 1, r0, nr, ym); break;                                            \
        }                                                                                                      \
      }                                                                                                        \
    }                                                                                                          \
  }
QG_NEON_Q8T(gemm_int4_q8t_neon, , q8t_dot_mull)
QG_NEON_Q8T(gemm_int4_q8t_sdot, QG_NEON_DOT, q8t_dot_sdot)
#undef QG_NEON_Q8T

/* ---------------- float32 baseline ---------------- */

static void gemm_f32_neon(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int64_t n0,
                          int64_t n1) {
  for (int64_t row = n0; row < n1; row++) {
    const float* wr = w + row * k;
    for (int64_t mi = 0; mi < m; mi++) {
      const float* xr = x + mi * k;
      float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
      int64_t i = 0;
      for (; i + 16 <= k; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(wr + i), vld1q_f32(xr + i));
        a1 = vfmaq_f32(a1, vld1q_f32(wr + i + 4), vld1q_f32(xr + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(wr + i + 8), vld1q_f32(xr + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(wr + i + 12), vld1q_f32(xr + i + 12));
      }
      for (; i + 4 <= k; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(wr + i), vld1q_f32(xr + i));
      float t = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
      for (; i < k; i++) t += wr[i] * xr[i];
      y[mi * n + row] = t;
    }
  }
}

static float read_sum_neon(const float* buf, int64_t count) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    a0 = vaddq_f32(a0, vld1q_f32(buf + i));
    a1 = vaddq_f32(a1, vld1q_f32(buf + i + 4));
    a2 = vaddq_f32(a2, vld1q_f32(buf + i + 8));
    a3 = vaddq_f32(a3, vld1q_f32(buf + i + 12));
  }
  float t = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < count; i++) t += buf[i];
  return t;
}

/* The int8 dot-product instructions (Armv8.2 FEAT_DotProd, optional before Armv8.4). */
static int cpu_has_dotprod(void) {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  return 1; /* every Apple arm64 CPU (M1 and later) has it */
#else
  return 0;
#endif
}

void qg_fill_neon(qg_dispatch* d) {
  d->isa = "neon";
  d->quant_int = quantize_int_neon;
  d->gemv_int[2] = d->gemm_int[2] = gemm_i2_neon;
  d->gemv_int[3] = d->gemm_int[3] = gemm_i3_neon;
  d->gemv_int[4] = d->gemm_int[4] = gemm_i4_neon;
  d->gemv_int[8] = d->gemm_int[8] = gemm_i8_neon;
  d->gemm_lut[QG_FMT_NF4] = d->gemm_lut[QG_FMT_FP4] = d->gemm_lut[QG_FMT_MXFP4] = d->gemm_lut[QG_FMT_CODEBOOK] = gemm_lut4_neon;
  d->gemm_lut[QG_FMT_FP8] = gemm_fp8_neon;
  d->gemm_f32 = gemm_f32_neon;
  d->read_sum = read_sum_neon;
  d->gemv_int4_q8 = gemv_int4_q8_neon;
  d->gemm_int4_q8 = gemm_int4_q8t_neon;
  if (cpu_has_dotprod()) {
    d->isa = "neon+dotprod";
    d->gemv_int4_q8 = gemv_int4_q8_sdot;
    d->gemm_int4_q8 = gemm_int4_q8t_sdot;
  }
}
#endif
