// A binary classifier trained to tell generated showers from reference showers, following the
// CaloChallenge protocol: a fully connected network with two hidden layers, a balanced
// train/validation/test split (60/20/20), early stopping on the validation loss, and the AUC
// and a Jensen-Shannon divergence estimate reported on the held-out test set.
import { cat, F, Generator, keep, nn, noGrad, optim, randperm, Tensor, tensor, tidy } from "../torch";
import { rocAuc } from "./metrics";

export interface ClassifierOptions {
  /** Width of each hidden layer (512, as the CaloChallenge network). */
  hidden?: number;
  hiddenLayers?: number;
  /** Dropout after each hidden activation. */
  dropout?: number;
  activation?: "leakyRelu" | "swish";
  learningRate?: number;
  batchSize?: number;
  maxEpochs?: number;
  /** Epochs without a lower validation loss before training stops. */
  patience?: number;
  /** Fractions of each class for training and validation; the rest is the test set. */
  trainFraction?: number;
  validationFraction?: number;
  seed?: number;
  /** Called after every epoch with the mean training loss and the validation loss. */
  onEpoch?: (epoch: number, trainLoss: number, validationLoss: number) => void;
}

export interface ClassifierResult {
  /** Area under the ROC curve on the test set; 0.5 means the classifier cannot tell them apart. */
  auc: number;
  /**
   * Jensen-Shannon divergence estimate in nats, ln 2 minus the test binary cross-entropy (a
   * lower bound for a balanced test set; 0 when indistinguishable, at most ln 2).
   */
  jsd: number;
  testLoss: number;
  bestEpoch: number;
  epochs: number;
  trainSize: number;
  validationSize: number;
  testSize: number;
}

/** Fully connected network [batch, inputs] -> [batch] logits. */
class Network extends nn.Module {
  private readonly layers: nn.Linear[] = [];
  private readonly dropouts: nn.Dropout[] = [];

  constructor(inputs: number, hidden: number, hiddenLayers: number, dropout: number, private readonly activation: (x: Tensor) => Tensor, generator: Generator) {
    super();
    let width = inputs;
    for (let i = 0; i < hiddenLayers; i++) {
      this.layers.push(this.child(`hidden.${i}`, new nn.Linear(width, hidden, true, { generator })));
      this.dropouts.push(this.child(`dropout.${i}`, new nn.Dropout(dropout)));
      width = hidden;
    }
    this.layers.push(this.child("output", new nn.Linear(width, 1, true, { generator })));
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (let i = 0; i < this.dropouts.length; i++) h = this.dropouts[i].forward(this.activation(this.layers[i].forward(h)));
    return this.layers[this.layers.length - 1].forward(h).reshape([-1]);
  }
}

interface Split {
  inputs: Tensor;
  labels: Tensor;
}

/** Splits one class's row indices into train, validation and test parts after shuffling. */
function splitIndices(rows: number, trainFraction: number, validationFraction: number, generator: Generator): [Tensor, Tensor, Tensor] {
  return tidy(() => {
    const order = randperm(rows, { generator });
    const trainEnd = Math.round(rows * trainFraction);
    const validationEnd = trainEnd + Math.round(rows * validationFraction);
    return [order.slice(0, 0, trainEnd), order.slice(0, trainEnd, validationEnd), order.slice(0, validationEnd, rows)];
  });
}

function labelled(reference: Tensor, generated: Tensor, referenceRows: Tensor, generatedRows: Tensor): Split {
  return tidy(() => {
    const a = reference.indexSelect(0, referenceRows);
    const b = generated.indexSelect(0, generatedRows);
    const labels = tensor(Float32Array.from({ length: a.shape[0] + b.shape[0] }, (_, i) => (i < a.shape[0] ? 0 : 1)));
    return { inputs: cat([a, b], 0), labels };
  });
}

/** Logits for every row, in chunks, without gradients. */
function predict(network: Network, inputs: Tensor, chunk: number): Float32Array {
  const out = new Float32Array(inputs.shape[0]);
  noGrad(() => {
    for (let start = 0; start < inputs.shape[0]; start += chunk) {
      const end = Math.min(start + chunk, inputs.shape[0]);
      out.set(tidy(() => network.forward(inputs.slice(0, start, end)).data() as Float32Array), start);
    }
  });
  return out;
}

/** Mean binary cross-entropy (nats) of logits against 0/1 labels, computed stably. */
function meanBce(logits: Float32Array, labels: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const z = logits[i];
    // -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - y z + log(1 + exp(-|z|)).
    sum += Math.max(z, 0) - labels[i] * z + Math.log1p(Math.exp(-Math.abs(z)));
  }
  return sum / logits.length;
}

/**
 * Trains a classifier to separate `generated` (label 1) from `reference` (label 0) rows and
 * evaluates it on the held-out test rows. reference: [nRef, features], generated: [nGen,
 * features], float32. Columns are standardised with the training split's mean and standard
 * deviation. The weights with the lowest validation loss are the ones tested.
 */
export function trainClassifier(reference: Tensor, generated: Tensor, options: ClassifierOptions = {}): ClassifierResult {
  if (reference.ndim !== 2 || generated.ndim !== 2 || reference.shape[1] !== generated.shape[1]) {
    throw new Error(`classifier inputs must be [rows, features] of equal width, found [${reference.shape}] and [${generated.shape}]`);
  }
  const trainFraction = options.trainFraction ?? 0.6;
  const validationFraction = options.validationFraction ?? 0.2;
  const batchSize = options.batchSize ?? 1000;
  const maxEpochs = options.maxEpochs ?? 50;
  const patience = options.patience ?? 5;
  const generator = new Generator(options.seed ?? 1234);
  const features = reference.shape[1];

  const [train, validation, test] = tidy(() => {
    const [refTrain, refValidation, refTest] = splitIndices(reference.shape[0], trainFraction, validationFraction, generator);
    const [genTrain, genValidation, genTest] = splitIndices(generated.shape[0], trainFraction, validationFraction, generator);
    const parts = [labelled(reference, generated, refTrain, genTrain), labelled(reference, generated, refValidation, genValidation), labelled(reference, generated, refTest, genTest)];

    // Standardise with training statistics; constant columns keep unit scale.
    const mean = parts[0].inputs.mean([0], true);
    const std = parts[0].inputs.variance([0], false, true).sqrt();
    const scale = std.gt(1e-12).to({ dtype: "float32" }).mul(std).add(std.le(1e-12).to({ dtype: "float32" }));
    return parts.map((p) => ({ inputs: p.inputs.sub(mean).div(scale), labels: p.labels }));
  });
  keep([train.inputs, train.labels, validation.inputs, validation.labels, test.inputs, test.labels]);
  if (train.inputs.shape[0] < 2 || validation.inputs.shape[0] < 1 || test.inputs.shape[0] < 2) {
    throw new Error(`classifier needs more showers: train ${train.inputs.shape[0]}, validation ${validation.inputs.shape[0]}, test ${test.inputs.shape[0]} rows`);
  }

  const activation = options.activation === "swish" ? nn.activations.swish : nn.activations.leakyRelu;
  const network = new Network(features, options.hidden ?? 512, options.hiddenLayers ?? 2, options.dropout ?? 0.2, activation, generator);
  const optimizer = new optim.Adam(network.parameters(), { lr: options.learningRate ?? 2e-4 });
  const best = network.parameters().map((p) => keep(noGrad(() => p.clone())));
  const validationLabels = validation.labels.data() as Float32Array;

  let bestLoss = Infinity;
  let bestEpoch = 0;
  let epoch = 0;
  try {
    while (epoch < maxEpochs && epoch - bestEpoch < patience) {
      epoch++;
      network.train();
      const rows = train.inputs.shape[0];
      const order = keep(randperm(rows, { generator }));
      let lossSum = 0;
      for (let start = 0; start < rows; start += batchSize) {
        const end = Math.min(start + batchSize, rows);
        lossSum += tidy(() => {
          const index = order.slice(0, start, end);
          const logits = network.forward(train.inputs.indexSelect(0, index));
          const loss = F.binaryCrossEntropyWithLogits(logits, train.labels.indexSelect(0, index));
          optimizer.zeroGrad();
          loss.backward();
          optimizer.step();
          return loss.item() * (end - start);
        });
      }
      order.dispose();

      network.eval();
      const validationLoss = meanBce(predict(network, validation.inputs, 4 * batchSize), validationLabels);
      options.onEpoch?.(epoch, lossSum / rows, validationLoss);
      if (validationLoss < bestLoss) {
        bestLoss = validationLoss;
        bestEpoch = epoch;
        noGrad(() => network.parameters().forEach((p, i) => best[i].copy_(p)));
      }
    }

    noGrad(() => network.parameters().forEach((p, i) => p.copy_(best[i])));
    network.eval();
    const logits = predict(network, test.inputs, 4 * batchSize);
    const labels = test.labels.data() as Float32Array;
    const positives: number[] = [];
    const negatives: number[] = [];
    for (let i = 0; i < logits.length; i++) (labels[i] === 1 ? positives : negatives).push(logits[i]);
    const testLoss = meanBce(logits, labels);
    // NOTE: the CaloChallenge evaluation calibrates the classifier output (isotonic regression)
    // before this estimate; without calibration it can only come out lower.
    return {
      auc: rocAuc(positives, negatives),
      jsd: Math.max(Math.LN2 - testLoss, 0),
      testLoss,
      bestEpoch,
      epochs: epoch,
      trainSize: train.inputs.shape[0],
      validationSize: validation.inputs.shape[0],
      testSize: test.inputs.shape[0],
    };
  } finally {
    optimizer.dispose();
    network.dispose();
    for (const t of [...best, train.inputs, train.labels, validation.inputs, validation.labels, test.inputs, test.labels]) t.dispose();
  }
}
