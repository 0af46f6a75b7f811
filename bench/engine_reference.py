"""PyTorch twin of the U-Net block in bench/engine.ts, for the engine benchmark. Run with
Debian's /usr/bin/python3 (torch 1.13).

By default it times training steps (forward, backward, Adam) and no-grad forwards with the
given batch, thread count, warm-up and repeat count, and prints one JSON object with the median
wall times in milliseconds:

  /usr/bin/python3 bench/engine_reference.py --batch 64 --threads 2 --warmup 1 --repeat 3

With --serve it prints one JSON line with the parameter count, then reads the commands "train",
"eval", "infer" and "overhead" line by line from stdin. It replies to each step with one JSON
line {"wall_ms", "cpu_ms"}, so that bench/engine.ts can alternate its own steps with PyTorch's
under the same machine load. "overhead" replies {"op_us"}, the wall time of one addition of two
16-element tensors, which is almost all per-call overhead.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

GRID = (45, 12, 12)
CHANNELS = (32, 64, 128)
EMBEDDING_WIDTH = 128
POOLING = (3, 2, 2)
KERNEL = 3


class ResidualBlock(nn.Module):
    """Two 3D convolutions with batch norm and swish, a conditional bias after the first, and a residual path."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, KERNEL, padding=KERNEL // 2)
        self.norm1 = nn.BatchNorm3d(out_channels)
        self.dense = nn.Linear(EMBEDDING_WIDTH, out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, KERNEL, padding=KERNEL // 2)
        self.norm2 = nn.BatchNorm3d(out_channels)
        self.skip = None if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x, embedding):
        bias = self.dense(embedding).reshape(-1, self.conv1.out_channels, 1, 1, 1)
        h = F.silu(self.norm1(self.conv1(x))) + bias
        out = F.silu(self.norm2(self.conv2(h)))
        return out + (x if self.skip is None else self.skip(x))


class UNetBlock(nn.Module):
    """Three levels down (45x12x12, 15x6x6, 5x3x3), two up with skip connections, one output channel."""

    def __init__(self):
        super().__init__()
        self.down = nn.ModuleList(
            [ResidualBlock(1 if i == 0 else CHANNELS[i - 1], c) for i, c in enumerate(CHANNELS)]
        )
        self.up = nn.ModuleList(
            [
                ResidualBlock(CHANNELS[2] + CHANNELS[1], CHANNELS[1]),
                ResidualBlock(CHANNELS[1] + CHANNELS[0], CHANNELS[0]),
            ]
        )
        self.output = nn.Conv3d(CHANNELS[0], 1, KERNEL, padding=KERNEL // 2)

    def forward(self, x, embedding):
        level0 = self.down[0](x, embedding)
        level1 = self.down[1](F.avg_pool3d(level0, POOLING), embedding)
        level2 = self.down[2](F.avg_pool3d(level1, POOLING), embedding)
        up1 = self.up[0](torch.cat([F.interpolate(level2, scale_factor=POOLING, mode="nearest"), level1], 1), embedding)
        up0 = self.up[1](torch.cat([F.interpolate(up1, scale_factor=POOLING, mode="nearest"), level0], 1), embedding)
        return self.output(up0)


def time_steps(step, warmup, repeat):
    """Runs step warmup times untimed, then repeat times; returns the median wall time in ms."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


OVERHEAD_OPS = 20000


def time_small_op():
    """Return the mean wall time in microseconds of adding two 16-element tensors."""
    a, b = torch.randn(16), torch.randn(16)
    for _ in range(OVERHEAD_OPS // 10):
        a + b
    start = time.perf_counter()
    for _ in range(OVERHEAD_OPS):
        a + b
    return (time.perf_counter() - start) / OVERHEAD_OPS * 1e6


def serve(model, train_step, infer_step):
    """Run "train", "eval", "infer" and "overhead" commands from stdin, replying with one JSON line each."""
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
                      "torch_version": torch.__version__}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "eval":
            model.eval()
            print(json.dumps({"eval": True}), flush=True)
            continue
        if command == "overhead":
            print(json.dumps({"op_us": time_small_op()}), flush=True)
            continue
        if command not in ("train", "infer"):
            raise SystemExit(f"unknown command '{command}'; expected train, eval, infer or overhead")
        wall, cpu = time.perf_counter(), time.process_time()
        (train_step if command == "train" else infer_step)()
        print(json.dumps({"wall_ms": (time.perf_counter() - wall) * 1000, "cpu_ms": (time.process_time() - cpu) * 1000}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help="run step commands from stdin, one JSON reply per line")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNetBlock()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 1, *GRID)
    target = torch.randn(args.batch, 1, *GRID)
    embedding = torch.randn(args.batch, EMBEDDING_WIDTH)

    def train_step():
        # set_to_none matches the engine, whose zeroGrad drops the gradient tensors.
        optimizer.zero_grad(set_to_none=True)
        (model(x, embedding) - target).square().mean().backward()
        optimizer.step()

    def infer_step():
        with torch.no_grad():
            model(x, embedding)

    model.train()
    if args.serve:
        serve(model, train_step, infer_step)
        return
    train_ms = time_steps(train_step, args.warmup, args.repeat)
    model.eval()
    infer_ms = time_steps(infer_step, args.warmup, args.repeat)
    print(
        json.dumps(
            {
                "train_step_ms": train_ms,
                "infer_step_ms": infer_ms,
                "parameters": sum(p.numel() for p in model.parameters()),
                "threads": torch.get_num_threads(),
                "torch_version": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
