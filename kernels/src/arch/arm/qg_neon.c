/* ARM NEON kernels: not written yet. On aarch64 the dispatch keeps the scalar references, and
 * qg_kernel_impl() reports 1 (reference) for every op so callers can see it. */
#include "../../qg_internal.h"
#if defined(__aarch64__)
void qg_fill_neon(qg_dispatch* d) { d->isa = "scalar (neon pending)"; }
#endif
