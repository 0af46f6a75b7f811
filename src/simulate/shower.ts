// One shower, from incident energy to a row of calibrated voxel energies: GFlash longitudinal and
// radial profiles, energy carried by discrete spots, sampling fluctuations per voxel, a constant
// resolution term per shower, and the readout threshold.
import type { Calorimeter } from "./detector";
import {
  LongitudinalDistribution,
  PHOTON_CONVERSION_DEPTH_X0,
  RadialProfile,
  longitudinalDistribution,
  radialProfile,
  showerShape,
  spotCount,
} from "./gflash";
import type { Rng } from "./random";
import { regularizedGammaP } from "./special";

/** Binning of one readout layer, as src/calo/binning.ts describes it. */
export interface LayerBins {
  /** Layer id in the binning file. */
  id: number;
  /** Radial bin edges in mm, increasing from 0. */
  rEdges: readonly number[];
  alphaBins: number;
  /** Index of the layer's first voxel in a shower row (voxel order: alpha bin, then r bin). */
  firstVoxel: number;
}

/** Voxel layout of a shower row. */
export interface VoxelLayout {
  layers: readonly LayerBins[];
  voxelCount: number;
}

/**
 * Maximum depth step, in X0, over which the radial profile is held constant. Each dataset 2 and 3
 * layer (0.81 X0) is one step, and the dataset 1 middle layer (16 X0) is 16 steps.
 */
const MAX_STEP_X0 = 1;

/** Splits a depth range into equal steps of at most MAX_STEP_X0; returns the step edges in X0. */
export function stepEdges(start: number, end: number): number[] {
  const count = Math.max(1, Math.ceil((end - start) / MAX_STEP_X0 - 1e-9));
  const edges = [start];
  for (let i = 1; i < count; i++) edges.push(start + (i * (end - start)) / count);
  edges.push(end);
  return edges;
}

/** Energy fractions below this are not deposited (less than 1 keV of a 1 TeV shower). */
const NEGLIGIBLE_FRACTION = 1e-9;

/** A depth step with its readout layer and binning. */
interface Step {
  start: number;
  end: number;
  firstVoxel: number;
  alphaBins: number;
  rEdges: Float64Array;
  /** Width of every r bin when the edges are evenly spaced from 0, else 0 (use a search). */
  uniformWidth: number;
  rBins: number;
  maxRadius: number;
}

function buildSteps(calorimeter: Calorimeter, layout: VoxelLayout): Step[] {
  const steps: Step[] = [];
  for (const range of calorimeter.ranges) {
    const bins = layout.layers.find((layer) => layer.id === range.layer);
    if (bins === undefined) {
      const ids = layout.layers.map((layer) => layer.id).join(", ");
      throw new Error(`dataset ${calorimeter.dataset}: the detector reads out layer ${range.layer}, but the binning has only layers ${ids}`);
    }
    const rEdges = Float64Array.from(bins.rEdges);
    const rBins = rEdges.length - 1;
    if (rBins < 1 || rEdges[0] !== 0) {
      throw new Error(`dataset ${calorimeter.dataset}: layer ${bins.id} r edges must start at 0 and have 2 or more entries, found ${bins.rEdges.join(",")}`);
    }
    const width = rEdges[1];
    let uniform = true;
    for (let i = 1; i <= rBins; i++) {
      if (Math.abs(rEdges[i] - i * width) > 1e-9 * rEdges[rBins]) uniform = false;
    }

    const edges = stepEdges(range.start, range.end);
    for (let i = 0; i + 1 < edges.length; i++) {
      steps.push({
        start: edges[i],
        end: edges[i + 1],
        firstVoxel: bins.firstVoxel,
        alphaBins: bins.alphaBins,
        rEdges,
        uniformWidth: uniform ? width : 0,
        rBins,
        maxRadius: rEdges[rBins],
      });
    }
  }
  return steps;
}

/** Index of the r bin of `radius` (0 <= radius < maxRadius) among increasing edges from 0. */
function radialBin(step: Step, radius: number): number {
  if (step.uniformWidth > 0) return Math.min(step.rBins - 1, Math.floor(radius / step.uniformWidth));
  let low = 0;
  let high = step.rBins;
  while (high - low > 1) {
    const middle = (low + high) >> 1;
    if (radius >= step.rEdges[middle]) low = middle;
    else high = middle;
  }
  return low;
}

/**
 * Simulates showers of one calorimeter into rows of a voxel layout. Not thread-safe: it keeps
 * scratch buffers, so each worker owns its own instance.
 */
export class ShowerSimulator {
  readonly voxelCount: number;
  private readonly steps: Step[];
  private readonly deposits: Float64Array;
  private readonly profile: RadialProfile = { coreRadius: 0, tailRadius: 0, coreWeight: 0 };
  private cachedEnergy = Number.NaN;
  private cachedDistribution: LongitudinalDistribution | null = null;

  constructor(
    readonly calorimeter: Calorimeter,
    layout: VoxelLayout,
  ) {
    this.voxelCount = layout.voxelCount;
    this.steps = buildSteps(calorimeter, layout);
    this.deposits = new Float64Array(layout.voxelCount);
  }

  private distribution(energyMeV: number): LongitudinalDistribution {
    if (energyMeV !== this.cachedEnergy || this.cachedDistribution === null) {
      this.cachedDistribution = longitudinalDistribution(this.calorimeter.medium, energyMeV);
      this.cachedEnergy = energyMeV;
    }
    return this.cachedDistribution;
  }

  /**
   * Simulates one shower of incident energy `energyMeV` and writes its calibrated voxel energies
   * (MeV) to `out[offset .. offset + voxelCount)`. Every random number comes from `rng`.
   */
  simulate(energyMeV: number, rng: Rng, out: Float32Array, offset: number): void {
    if (!(energyMeV > 0) || !Number.isFinite(energyMeV)) throw new Error(`incident energy must be a positive number of MeV, found ${energyMeV}`);
    // The deposits buffer is all zeros here, because writeRow clears every entry it reads.
    try {
      this.depositShower(energyMeV, rng);
    } catch (error) {
      this.deposits.fill(0);
      throw error;
    }
    this.writeRow(rng, out, offset);
  }

  /** Draws the shape and the spots of one shower into the deposits buffer. */
  private depositShower(energyMeV: number, rng: Rng): void {
    const calorimeter = this.calorimeter;
    const medium = calorimeter.medium;
    const shape = showerShape(medium, this.distribution(energyMeV), rng.normal(), rng.normal());
    const startDepth = calorimeter.particle === "photon" ? rng.exponential(PHOTON_CONVERSION_DEPTH_X0) : 0;
    const meanSpots = spotCount(energyMeV, calorimeter.stochasticTerm);

    for (const step of this.steps) {
      const front = Math.max(0, step.start - startDepth);
      const back = Math.max(0, step.end - startDepth);
      if (back <= 0) continue;

      const energyFraction = regularizedGammaP(shape.alpha, shape.beta * back) - regularizedGammaP(shape.alpha, shape.beta * front);
      if (energyFraction < NEGLIGIBLE_FRACTION) continue;
      const spotFraction =
        regularizedGammaP(shape.spotAlpha, shape.spotBeta * back) - regularizedGammaP(shape.spotAlpha, shape.spotBeta * front);
      // A step that receives energy gets at least one spot to carry it.
      const stepSpots = Math.max(1, rng.poisson(meanSpots * Math.max(0, spotFraction)));
      const stepEnergy = energyMeV * energyFraction;

      const tau = 0.5 * (front + back) * shape.tauPerX0;
      this.depositSpots(step, stepSpots, stepEnergy / stepSpots, radialProfile(medium, energyMeV, tau, this.profile), rng);
    }
  }

  /** Deposits `count` spots of `spotEnergy` MeV each, with radii from `profile` and uniform azimuth. */
  private depositSpots(step: Step, count: number, spotEnergy: number, profile: RadialProfile, rng: Rng): void {
    const deposits = this.deposits;
    const alphaBins = step.alphaBins;
    const rBins = step.rBins;
    const maxRadius = step.maxRadius;
    const firstVoxel = step.firstVoxel;
    const coreWeight = profile.coreWeight;

    for (let i = 0; i < count; i++) {
      // One uniform picks core or tail. Rescaled to [0, 1) within the chosen part, it is again
      // uniform and independent of the choice, so it also gives the azimuth.
      const choice = rng.uniform();
      let scale: number;
      let azimuth: number;
      if (choice < coreWeight) {
        scale = profile.coreRadius;
        azimuth = choice / coreWeight;
      } else {
        scale = profile.tailRadius;
        azimuth = (choice - coreWeight) / (1 - coreWeight);
      }
      // Inverse of the radial CDF r^2 / (r^2 + R^2).
      const u = rng.uniform();
      const radius = scale * Math.sqrt(u / (1 - u));
      // Spots beyond the last r edge leave the voxelised volume, as lateral leakage does.
      if (radius >= maxRadius) continue;
      const alphaBin = alphaBins === 1 ? 0 : Math.min(alphaBins - 1, Math.floor(azimuth * alphaBins));
      deposits[firstVoxel + alphaBin * rBins + radialBin(step, radius)] += spotEnergy;
    }
  }

  /**
   * Applies the resolution a / sqrt(E) (+) b and the readout threshold, writes the row to `out`
   * and clears the deposits for the next shower. Each voxel's energy e (GeV) becomes
   * a^2 Gamma(e / a^2), with mean e and variance a^2 e. Gamma variates with a common scale add up
   * to a gamma variate, so the shower total gets variance a^2 E whatever the voxelisation. This
   * is GFlash's sampling fluctuation, applied per voxel. The constant term multiplies the whole
   * shower by 1 + b g with g standard normal (calibration non-uniformity), held at 0 or above.
   */
  private writeRow(rng: Rng, out: Float32Array, offset: number): void {
    const deposits = this.deposits;
    const scaleMeV = this.calorimeter.stochasticTerm * this.calorimeter.stochasticTerm * 1000;
    const constant = Math.max(0, 1 + this.calorimeter.constantTerm * rng.normal());
    const threshold = this.calorimeter.thresholdMeV;
    for (let voxel = 0; voxel < this.voxelCount; voxel++) {
      const deposit = deposits[voxel];
      if (deposit > 0) {
        const value = constant * scaleMeV * rng.gamma(deposit / scaleMeV);
        out[offset + voxel] = value >= threshold ? value : 0;
        deposits[voxel] = 0;
      } else {
        out[offset + voxel] = 0;
      }
    }
  }
}
