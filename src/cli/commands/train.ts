// `caloscore train`: trains a CaloScore model (or the WGAN-GP baseline) on a shower file.
import { datasetFromVoxelCount } from "../../calo/binning";
import { initHdf5, openShowerFile } from "../../calo/hdf5";
import { lossWeights } from "../../calo/preprocess";
import { configureThreads } from "../../torch";
import { loadModelConfig } from "../../score/config";
import { createSde, SdeName } from "../../score/sde";
import { createScoreModel, preprocessedData, prepareRun, usableShowers } from "../../score/run";
import { trainScoreModel, ProgressEvent } from "../../score/train";
import { optionalNumber, optionalString, parseOptions, requireString } from "../args";
import { progressReporter } from "../progress";

export const summary = "train a score model (VE, VP, subVP) or the WGAN-GP baseline on a shower file";

const help = `usage: caloscore train --config CONFIG.json --sde subVP|VP|VE --data FILE.h5 --out RUN/ [options]

Trains on FILE.h5 (every fifth shower, for validationFraction 0.2, is the validation split) and
writes checkpoints to RUN/. Running the same command again resumes from RUN/last.safetensors.

options:
  --config FILE     model and training configuration (configs/dataset1.json, dataset2.json, ...)
  --sde NAME        VE, VP or subVP (score models only; default subVP)
  --model KIND      score (default) or wgan-gp
  --data FILE       CaloChallenge shower file (HDF5)
  --out DIR         run folder for checkpoints and logs
  --minutes M       stop after M minutes at the end of a batch (the epoch is checkpointed)
  --epochs N        override the configuration's maxEpochs (gan.maxEpochs for wgan-gp)
  --threads N       intra-op threads (default: CALOSCORE_THREADS or all cores)`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("train", args, {
    config: { type: "string" },
    sde: { type: "string" },
    model: { type: "string" },
    data: { type: "string" },
    out: { type: "string" },
    minutes: { type: "string" },
    epochs: { type: "string" },
    threads: { type: "string" },
  });
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }
  const configPath = requireString("train", parsed, "config");
  const dataPath = requireString("train", parsed, "data");
  const runDir = requireString("train", parsed, "out");
  const modelKind = optionalString(parsed, "model") ?? "score";
  const minutes = optionalNumber("train", parsed, "minutes", { min: 0 });
  const epochs = optionalNumber("train", parsed, "epochs", { integer: true, min: 1 });
  const threads = optionalNumber("train", parsed, "threads", { integer: true, min: 1 });
  configureThreads(threads);

  const config = loadModelConfig(configPath);
  if (epochs !== undefined) {
    // The GAN has its own epoch count, so --epochs overrides the one of the model being trained.
    if (modelKind === "wgan-gp") config.gan.maxEpochs = epochs;
    else config.training.maxEpochs = epochs;
  }
  await initHdf5();
  const file = openShowerFile(dataPath, { dataset: config.dataset });
  try {
    if (modelKind === "wgan-gp") {
      const { trainGanCommand } = await import("../../gan/command");
      return await trainGanCommand({ config, file, runDir, minutes });
    }
    if (modelKind !== "score") throw new Error(`train: --model must be score or wgan-gp, found '${modelKind}'`);
    const sdeName = (optionalString(parsed, "sde") ?? "subVP") as SdeName;
    const sde = createSde(sdeName, config.sde);
    console.log(`train: ${config.description || configPath}; ${sdeName} SDE; data ${dataPath} (${file.count} showers, dataset ${datasetFromVoxelCount(file.voxels)})`);
    const { preprocessing } = prepareRun(runDir, config, sde.name, "score", file);
    const model = createScoreModel(config, sde, preprocessing.modelShape);
    console.log(`train: model input [${preprocessing.modelShape.join(", ")}], ${model.parameterCount().toLocaleString("en-US")} parameters`);
    const progress = progressReporter();
    try {
      const state = trainScoreModel({
        config,
        sde,
        model,
        data: preprocessedData(file, preprocessing, usableShowers(config, file)),
        entryWeights: lossWeights(preprocessing, config.training.energyEntryWeight) ?? undefined,
        runDir,
        minutes,
        log: (line) => progress.log(line),
        onProgress: (event: ProgressEvent) =>
          progress.update(
            `epoch ${event.epoch}/${event.maxEpochs}`,
            event.done / event.total,
            `loss ${event.loss.toFixed(4)}, ${event.showersPerSecond.toFixed(0)} showers/s`,
          ),
      });
      progress.done();
      console.log(`train: ${state.epoch} epochs; best validation loss ${state.bestValidationLoss?.toFixed(5)}; checkpoints in ${runDir}`);
    } finally {
      model.dispose();
    }
  } finally {
    file.close();
  }
  return 0;
}
