// Dense float64 linear algebra for the quantization algorithms (Cholesky, triangular inverse, Jacobi
// eigensolver, Gram-Schmidt, a seeded Gaussian source): small, deterministic and dependency-free, so
// every result is reproducible bit for bit across runs and machines with the same Node version.
// Matrices are row-major Float64Arrays; "vectors" blocks are stored one vector after another.

/** xorshift32 uniform in (0, 1) from a fixed seed. */
export function uniformSource(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller on xorshift32) from a fixed seed. */
export function gaussianSource(seed: number): () => number {
  const u = uniformSource(seed);
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/**
 * Lower Cholesky factor of a symmetric positive definite n x n matrix: a = L L^T.
 * Returns undefined when a pivot is not positive (the matrix is not numerically PD).
 */
export function choleskyLower(a: Float64Array, n: number): Float64Array | undefined {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let s = a[rj + j]!;
    for (let p = 0; p < j; p++) s -= l[rj + p]! * l[rj + p]!;
    if (!(s > 0) || !Number.isFinite(s)) return undefined;
    const d = Math.sqrt(s);
    l[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let t = a[ri + j]!;
      for (let p = 0; p < j; p++) t -= l[ri + p]! * l[rj + p]!;
      l[ri + j] = t / d;
    }
  }
  return l;
}

/** Inverse of a lower triangular matrix with nonzero diagonal (the result is lower triangular). */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const m = new Float64Array(n * n);
  const acc = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    acc.fill(0, 0, i);
    // Row i of M: M[i][j] = -(sum_{p=j}^{i-1} L[i][p] M[p][j]) / L[i][i]; accumulate row by row of M.
    for (let p = 0; p < i; p++) {
      const lip = l[ri + p]!;
      if (lip === 0) continue;
      const rp = p * n;
      for (let j = 0; j <= p; j++) acc[j]! += lip * m[rp + j]!;
    }
    const inv = 1 / l[ri + i]!;
    for (let j = 0; j < i; j++) m[ri + j] = -acc[j]! * inv;
    m[ri + i] = inv;
  }
  return m;
}

/**
 * Upper Cholesky factor U of inv(a) (inv(a) = U^T U) for a symmetric PD matrix, as GPTQ needs it.
 * Uses one Cholesky and one triangular inverse: with J the reversal permutation, J a J = L L^T gives
 * inv(a) = (J inv(L) J)^T (J inv(L) J), and J inv(L) J is upper triangular with a positive diagonal.
 */
export function upperCholeskyOfInverse(a: Float64Array, n: number): Float64Array | undefined {
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) r[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)]!;
  const l = choleskyLower(r, n);
  if (!l) return undefined;
  const m = invertLower(l, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = m[(n - 1 - i) * n + (n - 1 - j)]!;
  return u;
}

export interface SymmetricEigen {
  /** Eigenvalues, descending. */
  readonly values: Float64Array;
  /** n x n row-major; column j is the unit eigenvector of values[j]. */
  readonly vectors: Float64Array;
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations (accurate; O(n^3) per sweep). */
export function symmetricEigen(input: Float64Array, n: number, maxSweeps = 60): SymmetricEigen {
  const a = Float64Array.from(input);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i]! * a[i]!;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! * a[p * n + q]!;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const app = a[p * n + p]!;
        const aqq = a[q * n + q]!;
        // Skip rotations that cannot change anything at double precision.
        if (Math.abs(apq) < 1e-300 || (Math.abs(apq) < 1e-18 * Math.abs(app) && Math.abs(apq) < 1e-18 * Math.abs(aqq))) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y]! - a[x * n + x]! || x - y);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = a[src * n + src]!;
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src]!;
  });
  return { values, vectors };
}

/**
 * Orthonormalize `count` vectors of length `len` stored back to back, in place, by modified Gram-Schmidt
 * applied twice ("twice is enough"). A vector that collapses (linearly dependent) is replaced by a
 * fresh seeded Gaussian vector, so the block always comes back with `count` orthonormal vectors.
 */
export function orthonormalize(vs: Float64Array, len: number, count: number, seed = 7): void {
  const g = gaussianSource(seed);
  for (let j = 0; j < count; j++) {
    const vj = vs.subarray(j * len, (j + 1) * len);
    let attempts = 0;
    for (;;) {
      let before = 0;
      for (let t = 0; t < len; t++) before += vj[t]! * vj[t]!;
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < j; i++) {
          const vi = vs.subarray(i * len, (i + 1) * len);
          let dot = 0;
          for (let t = 0; t < len; t++) dot += vi[t]! * vj[t]!;
          for (let t = 0; t < len; t++) vj[t]! -= dot * vi[t]!;
        }
      }
      let after = 0;
      for (let t = 0; t < len; t++) after += vj[t]! * vj[t]!;
      if (after > 1e-24 * before && after > 0) {
        const inv = 1 / Math.sqrt(after);
        for (let t = 0; t < len; t++) vj[t]! *= inv;
        break;
      }
      if (++attempts > 8) throw new RangeError(`cannot orthonormalize ${count} vectors of length ${len}`);
      for (let t = 0; t < len; t++) vj[t] = g();
    }
  }
}

/** sum over rows of d_r^T H d_r for d = a - b given as [rows][k] (H k x k, or its diagonal). */
export function weightedSquaredError(a: Float32Array | Float64Array, b: Float32Array | Float64Array, rows: number, k: number, h: Float64Array): number {
  const diagonal = h.length === k;
  const d = new Float64Array(k);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < k; c++) d[c] = a[r * k + c]! - b[r * k + c]!;
    total += quadraticForm(h, d, k, diagonal);
  }
  return total;
}

/** d^T H d (H full k x k, or its diagonal when `diagonal`). */
export function quadraticForm(h: Float64Array, d: Float64Array, k: number, diagonal = h.length === k): number {
  let s = 0;
  if (diagonal) {
    for (let c = 0; c < k; c++) s += h[c]! * d[c]! * d[c]!;
    return s;
  }
  for (let i = 0; i < k; i++) {
    const di = d[i]!;
    if (di === 0) continue;
    const ri = i * k;
    let t = 0;
    for (let j = 0; j < k; j++) t += h[ri + j]! * d[j]!;
    s += di * t;
  }
  return s;
}
