// Seeded pseudo-random numbers for the shower simulator: xoshiro128** (Blackman and Vigna),
// seeded through a 32-bit integer hash. Each shower has its own stream, so a file's content
// depends only on (seed, shower index) and never on chunking or on the number of workers.

/** 32-bit integer hash with full avalanche (the "lowbias32" finaliser published by C. Wellons). */
function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const TWO_POW_32 = 4294967296;

/** Splits a non-negative integer below 2^53 into its low and high 32-bit words. */
function splitWords(value: number): [number, number] {
  return [value >>> 0, Math.floor(value / TWO_POW_32) >>> 0];
}

/**
 * xoshiro128** generator with normal, exponential, gamma and Poisson variates.
 * Every method is deterministic given the seed; none reads global state.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** Second Box-Muller variate, or NaN when none is cached. */
  private spareNormal = Number.NaN;

  /** Seeds the stream from `words` (32-bit integers) through a chained hash. */
  constructor(...words: number[]) {
    let h = 0x9e3779b9;
    for (const word of words) h = mix32(h ^ mix32(word + 0x632be5ab));
    this.s0 = mix32(h + 0x1b873593);
    this.s1 = mix32(this.s0 + 0x85ebca6b);
    this.s2 = mix32(this.s1 + 0xc2b2ae35);
    this.s3 = mix32(this.s2 + 0x27d4eb2f);
    // The all-zero state is the one fixed point of xoshiro; hashing never yields it in
    // practice, but the guard costs nothing.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32-bit output as an unsigned integer. */
  nextUint32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const s2 = this.s2;
    const s3 = this.s3;
    const product = Math.imul(s1, 5);
    const rotated = (product << 7) | (product >>> 25);
    const result = Math.imul(rotated, 9) >>> 0;
    const t = s1 << 9;
    const n2 = s2 ^ s0;
    const n3 = s3 ^ s1;
    this.s1 = s1 ^ n2;
    this.s0 = s0 ^ n3;
    this.s2 = n2 ^ t;
    this.s3 = (n3 << 11) | (n3 >>> 21);
    return result;
  }

  /** Uniform variate in the open interval (0, 1), with 32-bit resolution. */
  uniform(): number {
    return (this.nextUint32() + 0.5) / TWO_POW_32;
  }

  /** Standard normal variate (Box-Muller; the second value of each pair is cached). */
  normal(): number {
    if (!Number.isNaN(this.spareNormal)) {
      const spare = this.spareNormal;
      this.spareNormal = Number.NaN;
      return spare;
    }
    const radius = Math.sqrt(-2 * Math.log(this.uniform()));
    const angle = 2 * Math.PI * this.uniform();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Exponential variate with the given mean. */
  exponential(mean: number): number {
    return -mean * Math.log(this.uniform());
  }

  /**
   * Gamma variate with shape `shape` > 0 and scale 1 (Marsaglia and Tsang, 2000). Shapes below 1
   * use Gamma(k) = Gamma(k + 1) * U^(1/k).
   */
  gamma(shape: number): number {
    if (!(shape > 0)) throw new Error(`gamma variate: shape must be positive, found ${shape}`);
    if (shape < 1) {
      const boosted = this.gamma(shape + 1);
      return boosted * Math.pow(this.uniform(), 1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      const x = this.normal();
      const base = 1 + c * x;
      if (base <= 0) continue;
      const v = base * base * base;
      const u = this.uniform();
      const x2 = x * x;
      if (u < 1 - 0.0331 * x2 * x2) return d * v;
      if (Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /**
   * Poisson variate. Means up to 30 use multiplication of uniforms. Larger means use the normal
   * approximation rounded to the nearest integer, whose rounding adds 1/12 to the variance
   * (under 0.3% of it).
   */
  poisson(mean: number): number {
    if (!(mean >= 0)) throw new Error(`Poisson variate: mean must be non-negative, found ${mean}`);
    if (mean === 0) return 0;
    if (mean <= 30) {
      const limit = Math.exp(-mean);
      let count = 0;
      let product = this.uniform();
      while (product > limit) {
        count += 1;
        product *= this.uniform();
      }
      return count;
    }
    return Math.max(0, Math.round(mean + Math.sqrt(mean) * this.normal()));
  }
}

/**
 * Stream of shower `index` for run seed `seed`; both are non-negative integers below 2^53.
 * Streams for different (seed, index) pairs are seeded independently.
 */
export function showerRng(seed: number, index: number): Rng {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer below 2^53, found ${seed}`);
  if (!Number.isSafeInteger(index) || index < 0) throw new Error(`shower index must be a non-negative integer, found ${index}`);
  const [seedLow, seedHigh] = splitWords(seed);
  const [indexLow, indexHigh] = splitWords(index);
  return new Rng(seedLow, seedHigh, indexLow, indexHigh);
}
