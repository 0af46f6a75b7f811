// `caloscore evaluate`: compares generated shower files with a reference and writes an HTML report.
import * as path from "node:path";

import { flag, optionalNumber, optionalString, parseOptions, requireString } from "../args";
import { evaluate, GeneratedInput } from "../../evaluate/evaluate";

export const summary = "compare generated showers with a reference: paper plots, CaloChallenge metrics, HTML report";

const help = `usage: caloscore evaluate --dataset D --reference REF.h5 --generated GEN.h5 [--generated GEN2.h5 ...]
                         [--label NAME ...] --out REPORT/ [options]

Reads the reference and every generated file (CaloChallenge HDF5) and writes REPORT/index.html
(opens offline in a browser), REPORT/metrics.json (every number) and REPORT/plots/*.svg and
*.png: the CaloScore paper's distributions with EMDs, the CaloChallenge high-level features with
separation powers, FPD and KPD, and the low- and high-level classifier AUCs.

options:
  --dataset NAME        1-photons, 1-pions, 2 or 3
  --reference FILE      reference showers (Geant4)
  --generated FILE      generated showers; repeat for several models
  --label NAME          label of each generated file, in the same order (default: file name
                        without extension)
  --out DIR             report folder, created if missing
  --no-classifier       skip the classifiers (much faster)
  --reference-label L   name of the reference in plots and tables (default Geant4)
  --max-showers N       read at most N showers of each file
  --epochs N            maximum classifier epochs (default 50, with early stopping)
  --fpd-batches N       batches per batch size for FPD (default 20)`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("evaluate", args, {
    dataset: { type: "string" },
    reference: { type: "string" },
    generated: { type: "string", multiple: true },
    label: { type: "string", multiple: true },
    "reference-label": { type: "string" },
    out: { type: "string" },
    "no-classifier": { type: "boolean" },
    "max-showers": { type: "string" },
    epochs: { type: "string" },
    "fpd-batches": { type: "string" },
  });
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }

  const dataset = requireString("evaluate", parsed, "dataset");
  const reference = requireString("evaluate", parsed, "reference");
  const outDir = requireString("evaluate", parsed, "out");
  const files = (parsed.values.generated as string[] | undefined) ?? [];
  const labels = (parsed.values.label as string[] | undefined) ?? [];
  if (files.length === 0) throw new Error("evaluate: missing required option --generated");
  if (labels.length > 0 && labels.length !== files.length) {
    throw new Error(`evaluate: found ${labels.length} --label for ${files.length} --generated; give one label per generated file or none`);
  }
  const generated: GeneratedInput[] = files.map((file, i) => ({ path: file, label: labels[i] ?? path.basename(file).replace(/\.[^.]*$/, "") }));
  const maxShowers = optionalNumber("evaluate", parsed, "max-showers", { integer: true, min: 5 });
  const epochs = optionalNumber("evaluate", parsed, "epochs", { integer: true, min: 1 });
  const fpdBatches = optionalNumber("evaluate", parsed, "fpd-batches", { integer: true, min: 1 });

  const metrics = await evaluate({
    dataset,
    reference,
    generated,
    outDir,
    referenceLabel: optionalString(parsed, "reference-label"),
    classifier: !flag(parsed, "no-classifier"),
    maxShowers,
    classifierOptions: epochs === undefined ? undefined : { maxEpochs: epochs },
    fpdOptions: fpdBatches === undefined ? undefined : { batches: fpdBatches },
    log: (line) => console.log(`evaluate: ${line}`),
  });
  for (const [label, model] of Object.entries(metrics.models)) {
    const auc = model.auc_low_level === null ? "" : `, AUC low-level ${model.auc_low_level.toFixed(3)}, high-level ${(model.auc_high_level ?? NaN).toFixed(3)}`;
    console.log(`evaluate: ${label}: FPD ${model.fpd.toPrecision(3)} +- ${model.fpd_error.toPrecision(2)}, KPD ${model.kpd.toPrecision(3)} +- ${model.kpd_error.toPrecision(2)}${auc}`);
  }
  return 0;
}
