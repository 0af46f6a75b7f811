// Dense symmetric linear algebra in float64 for the Frechet distance: a Cholesky factor that
// accepts positive semi-definite matrices, and the eigenvalues of a symmetric matrix. Matrices
// are row-major Float64Array of n x n, where n is the feature count (a few hundred at most).

/**
 * Computes the lower-triangular L with L L^T = a for a symmetric positive semi-definite a. A
 * remaining pivot at or below `relativeTolerance` times the largest diagonal entry marks the
 * matrix as singular in that direction, and that column of L is set to zero. A rank-deficient
 * covariance (a constant feature) therefore needs no added jitter.
 */
export function choleskySemidefinite(a: Float64Array, n: number, relativeTolerance = 1e-13): Float64Array {
  let maxDiagonal = 0;
  for (let i = 0; i < n; i++) maxDiagonal = Math.max(maxDiagonal, a[i * n + i]);
  const tolerance = relativeTolerance * maxDiagonal;
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let pivot = a[j * n + j];
    for (let p = 0; p < j; p++) pivot -= l[j * n + p] * l[j * n + p];
    if (!(pivot > tolerance)) continue;
    const root = Math.sqrt(pivot);
    l[j * n + j] = root;
    for (let i = j + 1; i < n; i++) {
      let sum = a[i * n + j];
      for (let p = 0; p < j; p++) sum -= l[i * n + p] * l[j * n + p];
      l[i * n + j] = sum / root;
    }
  }
  return l;
}

/**
 * Reduces a symmetric matrix to tridiagonal form by Householder reflections and returns the
 * diagonal and the sub-diagonal (length n - 1). Only the lower triangle of the input is read,
 * and it is overwritten.
 */
function tridiagonalize(a: Float64Array, n: number): { diagonal: Float64Array; offDiagonal: Float64Array } {
  const v = new Float64Array(n);
  const w = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    let norm = 0;
    for (let i = k + 1; i < n; i++) norm += a[i * n + k] * a[i * n + k];
    norm = Math.sqrt(norm);
    if (norm === 0) continue;

    // Reflection H = I - 2 v v^T (|v| = 1) that maps column k below the diagonal onto alpha e1;
    // alpha takes the sign opposite to the leading entry to avoid cancellation.
    const leading = a[(k + 1) * n + k];
    const alpha = leading > 0 ? -norm : norm;
    for (let i = k + 1; i < n; i++) v[i] = a[i * n + k];
    v[k + 1] -= alpha;
    let vNorm = 0;
    for (let i = k + 1; i < n; i++) vNorm += v[i] * v[i];
    vNorm = Math.sqrt(vNorm);
    if (vNorm === 0) continue;
    for (let i = k + 1; i < n; i++) v[i] /= vNorm;

    // H A H = A - 2 v q^T - 2 q v^T with w = A v and q = w - (v^T w) v, on the trailing block.
    // Only its lower triangle is read and updated, which halves the work.
    for (let i = k + 1; i < n; i++) w[i] = 0;
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = v[i];
      let sum = a[row + i] * vi;
      for (let j = k + 1; j < i; j++) {
        const aij = a[row + j];
        sum += aij * v[j];
        w[j] += aij * vi;
      }
      w[i] += sum;
    }
    let vw = 0;
    for (let i = k + 1; i < n; i++) vw += v[i] * w[i];
    for (let i = k + 1; i < n; i++) w[i] -= vw * v[i];
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = 2 * v[i];
      const wi = 2 * w[i];
      for (let j = k + 1; j <= i; j++) a[row + j] -= vi * w[j] + wi * v[j];
    }
    a[(k + 1) * n + k] = alpha;
    for (let i = k + 2; i < n; i++) a[i * n + k] = 0;
  }
  const diagonal = new Float64Array(n);
  const offDiagonal = new Float64Array(Math.max(n - 1, 0));
  for (let i = 0; i < n; i++) diagonal[i] = a[i * n + i];
  for (let i = 0; i + 1 < n; i++) offDiagonal[i] = a[(i + 1) * n + i];
  return { diagonal, offDiagonal };
}

/**
 * Applies one implicit symmetric QR step with a Wilkinson shift, in place, to the unreduced block
 * [lo, hi] of a tridiagonal matrix (diagonal `a`, sub-diagonal `b`). Each Givens rotation on rows
 * and columns k, k + 1 moves the bulge one row down.
 */
function qrStep(a: Float64Array, b: Float64Array, lo: number, hi: number): void {
  const half = (a[hi - 1] - a[hi]) / 2;
  const last = b[hi - 1];
  const shift = a[hi] - (last * last) / (half + (half >= 0 ? 1 : -1) * Math.hypot(half, last));
  let x = a[lo] - shift;
  let z = b[lo];
  for (let k = lo; k < hi; k++) {
    const r = Math.hypot(x, z);
    const c = r === 0 ? 1 : x / r;
    const s = r === 0 ? 0 : z / r;
    if (k > lo) b[k - 1] = r;
    const ak = a[k];
    const ak1 = a[k + 1];
    const bk = b[k];
    a[k] = c * c * ak + 2 * c * s * bk + s * s * ak1;
    a[k + 1] = s * s * ak - 2 * c * s * bk + c * c * ak1;
    b[k] = c * s * (ak1 - ak) + (c * c - s * s) * bk;
    if (k + 1 < hi) {
      // The rotation fills position (k + 2, k): the bulge that the next rotation removes.
      z = s * b[k + 1];
      b[k + 1] *= c;
      x = b[k];
    }
  }
}

/**
 * Computes the eigenvalues of a symmetric n x n matrix in ascending order: Householder tridiagonalisation,
 * then implicit QR steps with Wilkinson shifts until every sub-diagonal entry is negligible. The
 * input is not modified.
 */
export function symmetricEigenvalues(matrix: Float64Array, n: number): Float64Array {
  if (n === 0) return new Float64Array(0);
  const { diagonal: a, offDiagonal: b } = tridiagonalize(Float64Array.from(matrix), n);
  const negligible = (i: number) => Math.abs(b[i]) <= Number.EPSILON * (Math.abs(a[i]) + Math.abs(a[i + 1]));

  let hi = n - 1;
  let steps = 0;
  while (hi > 0) {
    if (negligible(hi - 1)) {
      b[hi - 1] = 0;
      hi--;
      continue;
    }
    let lo = hi - 1;
    while (lo > 0 && !negligible(lo - 1)) lo--;
    if (++steps > 50 * n) throw new Error(`symmetric eigenvalues did not converge for a ${n} x ${n} matrix`);
    qrStep(a, b, lo, hi);
  }
  return a.sort();
}
