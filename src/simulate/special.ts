// Special functions for the gamma-distribution shower profiles.

const HALF_LOG_TWO_PI = 0.5 * Math.log(2 * Math.PI);

/**
 * Natural logarithm of the gamma function for x > 0: the recurrence lnG(x) = lnG(x + 1) - ln x
 * lifts x to at least 8, where the Stirling series up to x^-9 is accurate to about 1e-12.
 */
export function logGamma(x: number): number {
  if (!(x > 0)) throw new Error(`logGamma: argument must be positive, found ${x}`);
  let shift = 0;
  let z = x;
  while (z < 8) {
    shift += Math.log(z);
    z += 1;
  }
  const inverse = 1 / z;
  const inverse2 = inverse * inverse;
  const series = inverse * (1 / 12 - inverse2 * (1 / 360 - inverse2 * (1 / 1260 - inverse2 * (1 / 1680 - inverse2 / 1188))));
  return (z - 0.5) * Math.log(z) - z + HALF_LOG_TWO_PI + series - shift;
}

/**
 * Regularised lower incomplete gamma function P(a, x) = gamma(a, x) / Gamma(a) for a > 0,
 * x >= 0: the power series below x = a + 1, the continued fraction for Q = 1 - P above
 * (evaluated with the modified Lentz method). Relative accuracy about 1e-12.
 */
export function regularizedGammaP(a: number, x: number): number {
  if (!(a > 0)) throw new Error(`regularizedGammaP: shape must be positive, found ${a}`);
  if (!(x >= 0)) return 0;
  if (x === 0) return 0;
  if (!Number.isFinite(x)) return 1;
  const logPrefactor = -x + a * Math.log(x) - logGamma(a);

  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return Math.min(1, sum * Math.exp(logPrefactor));
  }

  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let fraction = d;
  for (let n = 1; n < 1000; n++) {
    const an = -n * (n - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    fraction *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.max(0, 1 - Math.exp(logPrefactor) * fraction);
}
