// `caloscore features`: computes the high-level features of every shower in a file and writes them
// to an HDF5 file.
import { loadGeometry, parseDatasetName } from "../../calo/binning";
import { allocateFeatures, computeFeaturesInto, evaluationCut, hitThreshold } from "../../calo/features";
import { blockRows, initHdf5, openShowerFile, writeArrays } from "../../calo/hdf5";
import { optionalNumber, parseOptions, requireString } from "../args";

export const summary = "compute per-shower high-level features (energies, centres, widths, sparsity)";

const help = `usage: caloscore features FILE.h5 --dataset D --out FEATURES.h5 [--threshold MEV] [--cut MEV]

Writes one row per shower: E_inc, E_tot (N) and E_layer, EC_eta, EC_phi, width_eta, width_phi,
sparsity (N x layers, layers in binning-file order), with the CaloChallenge evaluation's
definitions. Layers without angular binning contain NaN in the eta and phi columns. Also written:
E_ratio, hits, max_voxel_fraction (N), EC_r, width_r, max_layer_fraction (N x layers), layer_ids.
All arrays are float64.

options:
  --dataset D       1-photons, 1-pions, 2 or 3 (1 means 1-photons)
  --out FILE        output HDF5 file (written as FILE.partial, then renamed)
  --threshold MEV   voxels at or below this energy count as empty for sparsity and hits
                    (default 0.0151 MeV for datasets 2 and 3, 1e-5 MeV for dataset 1)
  --cut MEV         voxels below this energy are set to 0 before all features, as the
                    CaloChallenge evaluation does (default 0.5e-3 / 0.033 MeV for datasets 2 and
                    3, 1 MeV for dataset 1; 0 disables it)`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions(
    "features",
    args,
    { dataset: { type: "string" }, out: { type: "string" }, threshold: { type: "string" }, cut: { type: "string" } },
    true,
  );
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    console.error(`features: expected one FILE.h5 argument, found ${parsed.positionals.length}\n\n${help}`);
    return 2;
  }
  const inputPath = parsed.positionals[0];
  const dataset = parseDatasetName(requireString("features", parsed, "dataset"));
  const outPath = requireString("features", parsed, "out");
  const threshold = optionalNumber("features", parsed, "threshold", { min: 0 }) ?? hitThreshold(dataset);
  const cut = optionalNumber("features", parsed, "cut", { min: 0 }) ?? evaluationCut(dataset);

  await initHdf5();
  const started = performance.now();
  const geometry = loadGeometry(dataset);
  const file = openShowerFile(inputPath, { dataset });
  const features = allocateFeatures(geometry, file.count);
  try {
    const rows = blockRows(file);
    for (let start = 0; start < file.count; start += rows) {
      const end = Math.min(start + rows, file.count);
      computeFeaturesInto(features, start, geometry, file.readEnergies(start, end), file.readShowers(start, end), { threshold, cut });
    }
  } finally {
    file.close();
  }

  const n = features.count;
  const layers = features.layers;
  const perShower = (data: Float64Array) => ({ data, shape: [n] });
  const perLayer = (data: Float64Array) => ({ data, shape: [n, layers] });
  writeArrays(outPath, {
    E_inc: perShower(features.eInc),
    E_tot: perShower(features.eTot),
    E_layer: perLayer(features.eLayer),
    EC_eta: perLayer(features.ecEta),
    EC_phi: perLayer(features.ecPhi),
    width_eta: perLayer(features.widthEta),
    width_phi: perLayer(features.widthPhi),
    sparsity: perLayer(features.sparsity),
    E_ratio: perShower(features.eRatio),
    hits: perShower(features.hits),
    max_voxel_fraction: perShower(features.maxVoxelFraction),
    EC_r: perLayer(features.ecR),
    width_r: perLayer(features.widthR),
    max_layer_fraction: perLayer(features.maxLayerFraction),
    layer_ids: { data: Float64Array.from(features.layerIds), shape: [layers] },
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(`features: ${n} showers, ${layers} layers (threshold ${threshold} MeV, cut ${cut} MeV) -> ${outPath} in ${seconds.toFixed(1)} s`);
  return 0;
}
