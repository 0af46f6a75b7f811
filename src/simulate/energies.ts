// Incident energies of simulated showers, as in the CaloChallenge datasets or from a user list.
import type { Rng } from "./random";

/**
 * Dataset 1 photons: 15 energies 2^8 .. 2^22 MeV (256 MeV .. 4194.304 GeV) and the number of
 * showers at each. NOTE: the counts (10000 up to 262.144 GeV, then 5000, 3000, 2000, 1000) are
 * an assumption: they reproduce the dataset's published total of 121000 showers and its
 * "fewer showers at the highest energies", but were not read from the files.
 */
export const DATASET1_ENERGIES_MEV: readonly number[] = Array.from({ length: 15 }, (_, i) => 256 * 2 ** i);
export const DATASET1_COUNTS: readonly number[] = [...Array<number>(11).fill(10000), 5000, 3000, 2000, 1000];

/** Log-uniform range of datasets 2 and 3, MeV. */
export const LOG_UNIFORM_MIN_MEV = 1_000;
export const LOG_UNIFORM_MAX_MEV = 1_000_000;

/** Incident energy of each shower index; the value is rounded to float32 as stored in the file. */
export interface EnergyPlan {
  /** Energy of shower `index` in MeV; `rng` is that shower's stream and may be consumed. */
  energyOf(index: number, rng: Rng): number;
  /** Human-readable description for logs. */
  description: string;
}

/** Energies drawn log-uniformly in [min, max] MeV, one uniform variate per shower. */
export function logUniformPlan(minMeV = LOG_UNIFORM_MIN_MEV, maxMeV = LOG_UNIFORM_MAX_MEV): EnergyPlan {
  const logRatio = Math.log(maxMeV / minMeV);
  return {
    energyOf: (_index, rng) => Math.fround(minMeV * Math.exp(logRatio * rng.uniform())),
    description: `log-uniform ${minMeV} .. ${maxMeV} MeV`,
  };
}

/**
 * Splits `total` showers over energies in proportion to `counts` (largest remainders, ties to the
 * lower index) and returns the per-energy numbers.
 */
export function apportion(total: number, counts: readonly number[]): number[] {
  const sum = counts.reduce((a, b) => a + b, 0);
  const exact = counts.map((count) => (total * count) / sum);
  const shares = exact.map(Math.floor);
  let missing = total - shares.reduce((a, b) => a + b, 0);
  const order = exact.map((value, index) => ({ index, remainder: value - Math.floor(value) }));
  order.sort((a, b) => b.remainder - a.remainder || a.index - b.index);
  for (const { index } of order) {
    if (missing === 0) break;
    shares[index] += 1;
    missing -= 1;
  }
  return shares;
}

/**
 * Fixed energies in consecutive blocks, in list order: energy i gets shares[i] showers.
 * NOTE: dataset 1 runs are thus ordered by increasing energy; the order of the real files was
 * not checked.
 */
export function blockPlan(energiesMeV: readonly number[], shares: readonly number[]): EnergyPlan {
  const ends: number[] = [];
  let end = 0;
  for (const share of shares) {
    end += share;
    ends.push(end);
  }
  const rounded = energiesMeV.map((energy) => Math.fround(energy));
  return {
    energyOf: (index) => {
      let block = 0;
      while (block < ends.length - 1 && index >= ends[block]) block += 1;
      return rounded[block];
    },
    description: energiesMeV.length === 1 ? `${energiesMeV[0]} MeV` : `${energiesMeV.length} energies ${energiesMeV.join(", ")} MeV`,
  };
}

/** Builds the energy plan of a dataset for `events` showers, or of a user list spread evenly over them. */
export function energyPlan(dataset: string, events: number, energiesMeV?: readonly number[]): EnergyPlan {
  if (energiesMeV !== undefined) {
    if (energiesMeV.length === 0) throw new Error("--energies: expected one energy or a comma-separated list in MeV, found none");
    for (const energy of energiesMeV) {
      if (!(energy > 0) || !Number.isFinite(energy)) throw new Error(`--energies: every energy must be a positive number of MeV, found ${energy}`);
    }
    return blockPlan(energiesMeV, apportion(events, energiesMeV.map(() => 1)));
  }
  if (dataset === "1-photons") return blockPlan(DATASET1_ENERGIES_MEV, apportion(events, DATASET1_COUNTS));
  return logUniformPlan();
}
