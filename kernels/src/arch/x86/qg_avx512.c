/* x86-64 AVX-512 (F/VL/BW/DQ/VNNI) kernels: the bodies of qg_x86_mm.h with 32 vector registers,
 * one-instruction 16-entry float table lookups and vpdpbusd for int8 activations. Compiled with
 * per-function target attributes; selected only where CPU detection found all of these. */
#if defined(__x86_64__) || defined(_M_X64)
#define QG_MM "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni"
#define QG_MM_512 1
#define QG_MM_SUFFIX _avx512
#include "qg_x86_mm.h"

#define QG_RU_CAT2(a, b) a##b
#define QG_RU_CAT(a, b) QG_RU_CAT2(a, b)
#define QG_RU_NAME rank_update_avx512
#define QG_RU_ATTR static __attribute__((target(QG_MM)))
#define QG_RU_W 8
#include "../../qg_rank_update.h"

void qg_fill_avx512(qg_dispatch* d) {
  qg_fill_avx2(d);
  d->isa = "avx512";
  d->gemv_int[2] = d->gemm_int[2] = gemm_i2_avx512;
  d->gemv_int[3] = d->gemm_int[3] = gemm_i3_avx512;
  d->gemv_int[4] = d->gemm_int[4] = gemm_i4_avx512;
  d->gemv_int[8] = d->gemm_int[8] = gemm_i8_avx512;
  d->gemm_lut[QG_FMT_NF4] = d->gemm_lut[QG_FMT_FP4] = d->gemm_lut[QG_FMT_MXFP4] = d->gemm_lut[QG_FMT_CODEBOOK] = gemm_lut4_avx512;
  d->gemm_lut[QG_FMT_FP8] = gemm_fp8_avx512;
  d->gemv_int4_q8 = gemv_int4_q8t_avx512;
  d->gemv_int4_q8_il = gemv_int4_q8il_avx512;
  d->rank_update = rank_update_avx512;
  d->gemm_int4_q8 = gemm_int4_q8t_avx512;
  d->quant_act_q8 = quant_act_q8_avx512;
}
#endif
