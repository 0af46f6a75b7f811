// The GFlash parametrisation of electromagnetic showers in sampling calorimeters
// (G. Grindhammer and S. Peters, "The parameterized simulation of electromagnetic showers in
// homogeneous and sampling calorimeters", hep-ex/0001020). The constants are those of GEANT4's
// implementation, source/parameterisations/gflash/include/GVFlashHomoShowerTuning.hh
// (homogeneous media) and GFlashSamplingShowerTuning.hh (sampling corrections).
//
// Depths t are in radiation lengths of the effective medium, radii in its Moliere radius,
// y = E / E_c. Radial quantities are functions of tau, the depth in units of the depth of the
// shower maximum.
import type { EffectiveMedium } from "./detector";

/** Published GFlash constants; the comment on each group gives the formula it enters. */
export const GFLASH = {
  // Homogeneous medium, mean profile: T = ln y + t1, alpha = a1 + (a2 + a3 / Z) ln y.
  homogeneousT1: -0.812,
  homogeneousA1: 0.81,
  homogeneousA2: 0.458,
  homogeneousA3: 2.26,
  // Sampling corrections: T_sam = T_hom + t1 / F_S + t2 (1 - e/mip), alpha_sam = alpha_hom + a1 / F_S.
  samplingT1: -0.55,
  samplingT2: -0.69,
  samplingA1: -0.476,
  // Sampling fluctuations of the profile: sigma(ln T) = 1 / (s1 + s2 ln y),
  // sigma(ln alpha) = 1 / (s3 + s4 ln y), correlation(ln T, ln alpha) = r1 + r2 ln y.
  sigmaLogT1: -2.5,
  sigmaLogT2: 1.25,
  sigmaLogA1: -0.82,
  sigmaLogA2: 0.79,
  correlation1: 0.784,
  correlation2: -0.023,
  // Radial core radius (homogeneous): R_C = z1 + z2 tau, z1 = c1 + c2 ln(E/GeV), z2 = c3 + c4 Z.
  coreRadius1: 0.0251,
  coreRadius2: 0.00319,
  coreRadius3: 0.1162,
  coreRadius4: -0.000381,
  // Radial tail radius (homogeneous): R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2))),
  // k1 = t1 + t2 Z, k4 = t5 + t6 ln(E/GeV).
  tailRadius1: 0.659,
  tailRadius2: -0.00309,
  tailRadiusK2: 0.645,
  tailRadiusK3: -2.59,
  tailRadius5: 0.3585,
  tailRadius6: 0.0412,
  // Core weight (homogeneous): p = p1 exp((p2 - tau) / p3 - exp((p2 - tau) / p3)),
  // p1 = c1 + c2 Z, p2 = c3 + c4 Z, p3 = c5 + c6 ln(E/GeV).
  coreWeight1: 2.632,
  coreWeight2: -0.00094,
  coreWeight3: 0.401,
  coreWeight4: 0.00187,
  coreWeight5: 1.313,
  coreWeight6: -0.0686,
  // Sampling corrections of the radial profile:
  // R_C += c1 (1 - e/mip) + c2 / F_S exp(-tau); R_T += t1 (1 - e/mip) + t2 / F_S exp(-tau);
  // p += (1 - e/mip) (w1 + w2 / F_S exp(-(tau - 1)^2)).
  samplingCoreRadius1: -0.0203,
  samplingCoreRadius2: 0.0397,
  samplingTailRadius1: -0.14,
  samplingTailRadius2: -0.495,
  samplingCoreWeight1: 0.348,
  samplingCoreWeight2: -0.642,
  // Spots in a sampling calorimeter: N = n1 / a (E/GeV)^n2 with a the stochastic term in
  // sqrt(GeV); their depth profile has T_s = T (t1 + t2 Z), alpha_s = alpha (a1 + a2 Z).
  spotCount1: 10.3,
  spotCount2: 0.959,
  spotT1: 0.813,
  spotT2: 0.0019,
  spotA1: 0.844,
  spotA2: 0.0026,
} as const;

/**
 * Limits that GEANT4's GFlashSamplingShowerParameterisation applies and the simulator keeps:
 * sigma(ln T) and sigma(ln alpha) at most 0.5, T at least 1 X0, alpha at least 1.1, spot-profile
 * T at least 0.5 X0. The spot-profile alpha is also held at 1.1 or more so that its rate
 * beta_s = (alpha_s - 1) / T_s stays positive.
 */
const MAX_LOG_SIGMA = 0.5;
const MIN_T_MAX = 1;
const MIN_ALPHA = 1.1;
const MIN_SPOT_T_MAX = 0.5;

/**
 * Mean pair-conversion depth of a photon, 9/7 X0 (the high-energy pair-production mean free
 * path). GenerateExponential in GEANT4's GFlashSamplingShowerParameterisation draws the same.
 */
export const PHOTON_CONVERSION_DEPTH_X0 = 9 / 7;

/** Distribution of the per-shower longitudinal shape (ln T, ln alpha) at one energy. */
export interface LongitudinalDistribution {
  meanLogT: number;
  meanLogAlpha: number;
  sigmaLogT: number;
  sigmaLogAlpha: number;
  /** Correlation coefficient of ln T and ln alpha. */
  correlation: number;
}

/** Computes the mean, widths and correlation of (ln T, ln alpha) for energy `energyMeV`. */
export function longitudinalDistribution(medium: EffectiveMedium, energyMeV: number): LongitudinalDistribution {
  const logY = Math.log(energyMeV / medium.criticalEnergy);
  const homogeneousT = logY + GFLASH.homogeneousT1;
  const homogeneousAlpha = GFLASH.homogeneousA1 + (GFLASH.homogeneousA2 + GFLASH.homogeneousA3 / medium.z) * logY;
  const samplingT =
    homogeneousT + GFLASH.samplingT1 / medium.samplingFrequency + GFLASH.samplingT2 * (1 - medium.electronToMip);
  const samplingAlpha = homogeneousAlpha + GFLASH.samplingA1 / medium.samplingFrequency;

  return {
    meanLogT: Math.log(Math.max(samplingT, 0.1)),
    meanLogAlpha: Math.log(Math.max(samplingAlpha, MIN_ALPHA)),
    sigmaLogT: logSigma(GFLASH.sigmaLogT1 + GFLASH.sigmaLogT2 * logY),
    sigmaLogAlpha: logSigma(GFLASH.sigmaLogA1 + GFLASH.sigmaLogA2 * logY),
    correlation: Math.max(-1, Math.min(1, GFLASH.correlation1 + GFLASH.correlation2 * logY)),
  };
}

/** 1 / denominator capped at MAX_LOG_SIGMA; a non-positive denominator (very low y) gives the cap. */
function logSigma(denominator: number): number {
  return denominator > 1 / MAX_LOG_SIGMA ? 1 / denominator : MAX_LOG_SIGMA;
}

/** Longitudinal shape of one shower: gamma profiles of the energy and of the spots. */
export interface ShowerShape {
  /** Depth of the energy profile's maximum, X0. */
  tMax: number;
  alpha: number;
  /** Rate of the energy profile, (alpha - 1) / T, per X0. */
  beta: number;
  spotAlpha: number;
  spotBeta: number;
  /** tau per X0 of depth: tau = t * tauPerX0 (see showerShape). */
  tauPerX0: number;
}

/**
 * Builds the shape of one shower from two independent standard normal variates, so that
 * (ln T, ln alpha) has the distribution's means, widths and correlation.
 */
export function showerShape(
  medium: EffectiveMedium,
  distribution: LongitudinalDistribution,
  normal1: number,
  normal2: number,
): ShowerShape {
  const common = Math.sqrt((1 + distribution.correlation) / 2) * normal1;
  const opposite = Math.sqrt((1 - distribution.correlation) / 2) * normal2;
  const tMax = Math.max(MIN_T_MAX, Math.exp(distribution.meanLogT + distribution.sigmaLogT * (common + opposite)));
  const alpha = Math.max(MIN_ALPHA, Math.exp(distribution.meanLogAlpha + distribution.sigmaLogAlpha * (common - opposite)));
  const beta = (alpha - 1) / tMax;

  const spotTMax = Math.max(MIN_SPOT_T_MAX, tMax * (GFLASH.spotT1 + GFLASH.spotT2 * medium.z));
  const spotAlpha = Math.max(MIN_ALPHA, alpha * (GFLASH.spotA1 + GFLASH.spotA2 * medium.z));

  // tau = t / T for the average shower, scaled to this shower's centre of gravity
  // <t>_i = alpha / beta: tau = (t / <t>_i) * (<t> / T) with <t> / T = a / (a - 1), a = exp(<ln alpha>).
  // This is GEANT4's ComputeTau.
  const meanAlpha = Math.exp(distribution.meanLogAlpha);
  const tauPerX0 = (beta / alpha) * (meanAlpha / (meanAlpha - 1));

  return { tMax, alpha, beta, spotAlpha, spotBeta: (spotAlpha - 1) / spotTMax, tauPerX0 };
}

/** Mean number of energy spots of one shower. */
export function spotCount(energyMeV: number, stochasticTerm: number): number {
  return (GFLASH.spotCount1 / stochasticTerm) * Math.pow(energyMeV / 1000, GFLASH.spotCount2);
}

/** Radial profile at one depth: f(r) = p 2 r R_C^2 / (r^2 + R_C^2)^2 + (1 - p) (same with R_T). */
export interface RadialProfile {
  /** Core radius R_C in mm. */
  coreRadius: number;
  /** Tail radius R_T in mm. */
  tailRadius: number;
  /** Core weight p in [0, 1]. */
  coreWeight: number;
}

/** Computes the radial profile at depth `tau` into `out`, which it returns. */
export function radialProfile(medium: EffectiveMedium, energyMeV: number, tau: number, out: RadialProfile): RadialProfile {
  const logEnergyGeV = Math.log(energyMeV / 1000);
  const z = medium.z;
  const missingMip = 1 - medium.electronToMip;
  const frequency = medium.samplingFrequency;

  let core = GFLASH.coreRadius1 + GFLASH.coreRadius2 * logEnergyGeV + (GFLASH.coreRadius3 + GFLASH.coreRadius4 * z) * tau;
  core += GFLASH.samplingCoreRadius1 * missingMip + (GFLASH.samplingCoreRadius2 / frequency) * Math.exp(-tau);

  const k1 = GFLASH.tailRadius1 + GFLASH.tailRadius2 * z;
  const k4 = GFLASH.tailRadius5 + GFLASH.tailRadius6 * logEnergyGeV;
  const fromMaximum = tau - GFLASH.tailRadiusK2;
  let tail = k1 * (Math.exp(GFLASH.tailRadiusK3 * fromMaximum) + Math.exp(k4 * fromMaximum));
  tail += GFLASH.samplingTailRadius1 * missingMip + (GFLASH.samplingTailRadius2 / frequency) * Math.exp(-tau);

  const p1 = GFLASH.coreWeight1 + GFLASH.coreWeight2 * z;
  const p2 = GFLASH.coreWeight3 + GFLASH.coreWeight4 * z;
  const p3 = GFLASH.coreWeight5 + GFLASH.coreWeight6 * logEnergyGeV;
  const x = (p2 - tau) / p3;
  let weight = p1 * Math.exp(x - Math.exp(x));
  weight += missingMip * (GFLASH.samplingCoreWeight1 + (GFLASH.samplingCoreWeight2 / frequency) * Math.exp(-(tau - 1) * (tau - 1)));

  // The fitted forms leave their range at extreme depths; radii stay positive, p a probability.
  out.coreRadius = Math.max(core, 1e-3) * medium.moliereRadius;
  out.tailRadius = Math.max(tail, 1e-3) * medium.moliereRadius;
  out.coreWeight = Math.min(1, Math.max(0, weight));
  return out;
}

/** Fraction of a radial profile's energy inside radius `radiusMm`: p F(R_C) + (1 - p) F(R_T), F = r^2 / (r^2 + R^2). */
export function radialContainment(profile: RadialProfile, radiusMm: number): number {
  const r2 = radiusMm * radiusMm;
  const core = r2 / (r2 + profile.coreRadius * profile.coreRadius);
  const tail = r2 / (r2 + profile.tailRadius * profile.tailRadius);
  return profile.coreWeight * core + (1 - profile.coreWeight) * tail;
}
