// A binary classifier trained to tell generated showers from reference showers, following the
// CaloChallenge protocol. It is a fully connected network with two hidden layers, trained on a
// balanced train/validation/test split (60/20/20) with early stopping on the validation loss.
// The AUC and a Jensen-Shannon divergence estimate come from the held-out test set.
import { cat, F, Generator, keep, nn, noGrad, ones, optim, randperm, Tensor, tidy, where, zeros } from "../torch";
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

/** Row indices of one class in the train, validation and test parts. */
interface ClassRows {
  train: Tensor;
  validation: Tensor;
  test: Tensor;
}

/** Splits one class's row indices into train, validation and test parts after shuffling. */
function splitRows(rows: number, trainFraction: number, validationFraction: number, generator: Generator): ClassRows {
  return tidy(() => {
    const order = randperm(rows, { generator });
    const trainEnd = Math.round(rows * trainFraction);
    const validationEnd = trainEnd + Math.round(rows * validationFraction);
    return { train: order.slice(0, 0, trainEnd), validation: order.slice(0, trainEnd, validationEnd), test: order.slice(0, validationEnd, rows) };
  });
}

/**
 * Column means and scales (standard deviations, 1 for constant columns) over the training rows
 * of both classes, accumulated in chunks in float64 so that no copy of the inputs is made.
 */
function trainingStatistics(classes: [Tensor, Tensor], rows: [Tensor, Tensor], chunk: number): { mean: Tensor; scale: Tensor } {
  return noGrad(() =>
    tidy(() => {
      const features = classes[0].shape[1];
      let sum = zeros([features], { dtype: "float64" });
      let squares = zeros([features], { dtype: "float64" });
      let count = 0;
      for (let c = 0; c < 2; c++) {
        const total = rows[c].shape[0];
        for (let start = 0; start < total; start += chunk) {
          const end = Math.min(start + chunk, total);
          [sum, squares] = tidy(() => {
            const x = classes[c].indexSelect(0, rows[c].slice(0, start, end)).to({ dtype: "float64" });
            return [sum.add(x.sum([0])), squares.add(x.square().sum([0]))];
          });
          count += end - start;
        }
      }
      const mean = sum.div(count);
      const variance = squares.div(count).sub(mean.square()).clamp(0, null);
      const std = variance.sqrt();
      const scale = where(std.gt(1e-12), std, 1);
      return { mean: mean.to({ dtype: "float32" }).reshape([1, -1]), scale: scale.to({ dtype: "float32" }).reshape([1, -1]) };
    }),
  );
}

/** Standardised inputs and 0/1 labels for the given rows of each class. */
function batch(classes: [Tensor, Tensor], rows: [Tensor, Tensor], mean: Tensor, scale: Tensor): { inputs: Tensor; labels: Tensor } {
  return tidy(() => {
    const a = classes[0].indexSelect(0, rows[0]);
    const b = classes[1].indexSelect(0, rows[1]);
    const labels = cat([zeros([a.shape[0]]), ones([b.shape[0]])], 0);
    return { inputs: cat([a, b], 0).sub(mean).div(scale), labels };
  });
}

/** Logits of every row of one class, in chunks, without gradients. */
function predict(network: Network, inputs: Tensor, rows: Tensor, mean: Tensor, scale: Tensor, chunk: number): Float32Array {
  const total = rows.shape[0];
  const out = new Float32Array(total);
  noGrad(() => {
    for (let start = 0; start < total; start += chunk) {
      const end = Math.min(start + chunk, total);
      const logits = tidy(() => network.forward(inputs.indexSelect(0, rows.slice(0, start, end)).sub(mean).div(scale)).data() as Float32Array);
      out.set(logits, start);
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
 * features], float32. Inputs are standardised with the training rows' column means and standard
 * deviations; batches are drawn by row index, so the inputs are never copied whole. The weights
 * with the lowest validation loss are the ones tested.
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
  const classes: [Tensor, Tensor] = [reference, generated];
  const chunk = 4 * batchSize;

  const splits = [splitRows(reference.shape[0], trainFraction, validationFraction, generator), splitRows(generated.shape[0], trainFraction, validationFraction, generator)];
  const { mean, scale } = trainingStatistics(classes, [splits[0].train, splits[1].train], chunk);
  const owned: Tensor[] = [mean, scale, ...splits.flatMap((s) => [s.train, s.validation, s.test])];
  keep(owned);
  const sizes = (part: keyof ClassRows) => splits[0][part].shape[0] + splits[1][part].shape[0];
  const trainSize = sizes("train");
  const validationSize = sizes("validation");
  const testSize = sizes("test");
  if (splits.some((s) => s.train.shape[0] < 1 || s.validation.shape[0] < 1 || s.test.shape[0] < 1)) {
    for (const t of owned) t.dispose();
    throw new Error(`classifier needs at least 5 showers per sample, found ${reference.shape[0]} reference and ${generated.shape[0]} generated`);
  }

  const activation = options.activation === "swish" ? nn.activations.swish : nn.activations.leakyRelu;
  const network = new Network(reference.shape[1], options.hidden ?? 512, options.hiddenLayers ?? 2, options.dropout ?? 0.2, activation, generator);
  const optimizer = new optim.Adam(network.parameters(), { lr: options.learningRate ?? 2e-4 });
  const best = network.parameters().map((p) => keep(noGrad(() => p.clone())));

  /** Logits and labels of one part, reference rows first. */
  const evaluatePart = (part: "validation" | "test") => {
    const referenceLogits = predict(network, reference, splits[0][part], mean, scale, chunk);
    const generatedLogits = predict(network, generated, splits[1][part], mean, scale, chunk);
    const logits = new Float32Array(referenceLogits.length + generatedLogits.length);
    logits.set(referenceLogits);
    logits.set(generatedLogits, referenceLogits.length);
    const labels = new Float32Array(logits.length).fill(1, referenceLogits.length);
    return { referenceLogits, generatedLogits, logits, labels };
  };

  let bestLoss = Infinity;
  let bestEpoch = 0;
  let epoch = 0;
  try {
    while (epoch < maxEpochs && epoch - bestEpoch < patience) {
      epoch++;
      network.train();

      // Each batch takes the same share of both classes' shuffled training rows.
      const [referenceOrder, generatedOrder] = tidy(() => splits.map((s) => s.train.indexSelect(0, randperm(s.train.shape[0], { generator }))));
      const batches = Math.ceil(trainSize / batchSize);
      let lossSum = 0;
      for (let k = 0; k < batches; k++) {
        lossSum += tidy(() => {
          const slice = (order: Tensor) => order.slice(0, Math.floor((k * order.shape[0]) / batches), Math.floor(((k + 1) * order.shape[0]) / batches));
          const { inputs, labels } = batch(classes, [slice(referenceOrder), slice(generatedOrder)], mean, scale);
          const loss = F.binaryCrossEntropyWithLogits(network.forward(inputs), labels);
          optimizer.zeroGrad();
          loss.backward();
          optimizer.step();
          return loss.item() * inputs.shape[0];
        });
      }
      referenceOrder.dispose();
      generatedOrder.dispose();

      network.eval();
      const validation = evaluatePart("validation");
      const validationLoss = meanBce(validation.logits, validation.labels);
      options.onEpoch?.(epoch, lossSum / trainSize, validationLoss);
      if (validationLoss < bestLoss) {
        bestLoss = validationLoss;
        bestEpoch = epoch;
        noGrad(() => network.parameters().forEach((p, i) => best[i].copy_(p)));
      }
    }

    noGrad(() => network.parameters().forEach((p, i) => p.copy_(best[i])));
    network.eval();
    const test = evaluatePart("test");
    const testLoss = meanBce(test.logits, test.labels);
    // NOTE: the CaloChallenge evaluation calibrates the classifier output (isotonic regression)
    // before this estimate; without calibration it can only come out lower.
    return {
      auc: rocAuc(test.generatedLogits, test.referenceLogits),
      jsd: Math.max(Math.LN2 - testLoss, 0),
      testLoss,
      bestEpoch,
      epochs: epoch,
      trainSize,
      validationSize,
      testSize,
    };
  } finally {
    optimizer.dispose();
    network.dispose();
    for (const t of [...best, ...owned]) t.dispose();
  }
}
