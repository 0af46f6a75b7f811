// Mean profiles that the GFlash parametrisation predicts, without simulation: the per-shower
// fluctuations of (ln T, ln alpha) are averaged by quadrature, so these are the expectations that
// simulated showers should reproduce.
import type { Calorimeter } from "./detector";
import { PHOTON_CONVERSION_DEPTH_X0, longitudinalDistribution, radialContainment, radialProfile, showerShape } from "./gflash";
import { stepEdges } from "./shower";
import { regularizedGammaP } from "./special";

/** Mean energy per readout range and per r bin, as fractions of the incident energy. */
export interface PredictedProfiles {
  /** One entry per calorimeter range (readout layer), inside the last r edge. */
  layerFractions: Float64Array;
  /** One entry per r bin of `rEdges`, summed over the readout ranges. */
  radialFractions: Float64Array;
}

/**
 * Quadrature grid: normals from -6 to 6 in steps of 0.25 in each of the two variates (the weight
 * outside is below 1e-8), and for photons conversion depths at 64 quantiles of the exponential.
 */
const GRID_LIMIT = 24;
const GRID_STEP = 0.25;
const CONVERSION_QUANTILES = 64;

/** Computes the mean layer and radial profiles of showers of `energyMeV` in `calorimeter`. */
export function predictProfiles(calorimeter: Calorimeter, energyMeV: number, rEdges: readonly number[]): PredictedProfiles {
  const medium = calorimeter.medium;
  const distribution = longitudinalDistribution(medium, energyMeV);
  const ranges = calorimeter.ranges;
  const layerFractions = new Float64Array(ranges.length);
  const radialFractions = new Float64Array(rEdges.length - 1);
  const profile = { coreRadius: 0, tailRadius: 0, coreWeight: 0 };
  const startDepths =
    calorimeter.particle === "photon"
      ? Array.from({ length: CONVERSION_QUANTILES }, (_, k) => -PHOTON_CONVERSION_DEPTH_X0 * Math.log(1 - (k + 0.5) / CONVERSION_QUANTILES))
      : [0];

  let weightSum = 0;
  for (let i = -GRID_LIMIT; i <= GRID_LIMIT; i++) {
    for (let j = -GRID_LIMIT; j <= GRID_LIMIT; j++) {
      const z1 = i * GRID_STEP;
      const z2 = j * GRID_STEP;
      const weight = Math.exp(-0.5 * (z1 * z1 + z2 * z2)) / startDepths.length;
      const shape = showerShape(medium, distribution, z1, z2);
      for (const startDepth of startDepths) {
        weightSum += weight;
        ranges.forEach((range, index) => {
          // The same depth steps as the simulator, each with the radial profile of its middle.
          const edges = stepEdges(range.start, range.end);
          for (let k = 0; k + 1 < edges.length; k++) {
            const front = Math.max(0, edges[k] - startDepth);
            const back = Math.max(0, edges[k + 1] - startDepth);
            if (back <= 0) continue;
            const fraction = regularizedGammaP(shape.alpha, shape.beta * back) - regularizedGammaP(shape.alpha, shape.beta * front);
            radialProfile(medium, energyMeV, 0.5 * (front + back) * shape.tauPerX0, profile);
            layerFractions[index] += weight * fraction * radialContainment(profile, rEdges[rEdges.length - 1]);
            let inner = 0;
            for (let r = 0; r < radialFractions.length; r++) {
              const outer = radialContainment(profile, rEdges[r + 1]);
              radialFractions[r] += weight * fraction * (outer - inner);
              inner = outer;
            }
          }
        });
      }
    }
  }
  for (let k = 0; k < layerFractions.length; k++) layerFractions[k] /= weightSum;
  for (let r = 0; r < radialFractions.length; r++) radialFractions[r] /= weightSum;
  return { layerFractions, radialFractions };
}
