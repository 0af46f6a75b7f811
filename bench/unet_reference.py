"""PyTorch mirror of caloscore's conditional U-Net score network (src/score/unet.ts and
src/score/embedding.ts), layer for layer, for side-by-side benchmarks. Run with Debian's
/usr/bin/python3 (torch 1.13).

As a script it times training steps (forward, backward, Adam) or no-grad score evaluations and
prints one JSON object:
  /usr/bin/python3 bench/unet_reference.py --config '{"dims":3,...}' --batch 128 --steps 3 --mode train
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class FourierFeatures(nn.Module):
    def __init__(self, frequencies, scale):
        super().__init__()
        self.register_buffer("W", torch.randn(1, frequencies) * scale * 2 * math.pi)

    def forward(self, v):
        projected = v.reshape(-1, 1) @ self.W
        return torch.cat([projected.sin(), projected.cos()], 1)


class ConditionEmbedding(nn.Module):
    def __init__(self, width, scale):
        super().__init__()
        self.time = FourierFeatures(width // 2, scale)
        self.energy = FourierFeatures(width // 2, scale)
        self.dense1 = nn.Linear(2 * width, 2 * width)
        self.dense2 = nn.Linear(2 * width, width)

    def forward(self, t, condition):
        features = torch.cat([self.time(t), self.energy(condition)], 1)
        return F.silu(self.dense2(F.silu(self.dense1(features))))


def make_conv(dims, cin, cout, kernel):
    conv = nn.Conv1d if dims == 1 else nn.Conv3d
    return conv(cin, cout, kernel, padding=kernel // 2)


class ConditionalConv(nn.Module):
    def __init__(self, dims, cin, cout, kernel, embedding):
        super().__init__()
        self.conv = make_conv(dims, cin, cout, kernel)
        self.dense = nn.Linear(embedding, cout)
        self.dims = dims

    def forward(self, x, emb):
        bias = self.dense(emb).reshape(emb.shape[0], -1, *([1] * self.dims))
        return self.conv(x) + bias


class ConditionalBlock(nn.Module):
    def __init__(self, dims, cin, cout, kernel, embedding, dropout):
        super().__init__()
        norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm3d
        self.conv1 = ConditionalConv(dims, cin, cout, kernel, embedding)
        self.norm1 = norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = ConditionalConv(dims, cout, cout, kernel, embedding)
        self.norm2 = norm(cout)

    def forward(self, x, emb):
        h = self.dropout(F.silu(self.norm1(self.conv1(x, emb))))
        return F.silu(self.norm2(self.conv2(h, emb)))


class UNet(nn.Module):
    def __init__(self, config):
        super().__init__()
        dims, channels, kernel, emb = config["dims"], config["channels"], config["kernel"], config["embedding"]
        dropout = config.get("dropout", 0.1)
        self.dims = dims
        self.pooling = config["pooling"]
        self.embedding = ConditionEmbedding(emb, config.get("fourierScale", 16))
        self.input = ConditionalConv(dims, config["inputShape"][0], channels[0], kernel, emb)
        self.down = nn.ModuleList()
        for level, c in enumerate(channels):
            cin = channels[0] if level == 0 else channels[level - 1]
            self.down.append(ConditionalBlock(dims, cin, c, kernel, emb, dropout))
        self.reduce = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(len(channels) - 2, -1, -1):
            self.reduce.append(ConditionalConv(dims, channels[level + 1], channels[level], kernel, emb))
            self.up.append(ConditionalBlock(dims, channels[level], channels[level], kernel, emb, dropout))
        self.output = make_conv(dims, channels[0], config["inputShape"][0], kernel)

    def pool(self, h):
        return F.avg_pool1d(h, self.pooling) if self.dims == 1 else F.avg_pool3d(h, self.pooling)

    def forward(self, x, t, condition):
        emb = self.embedding(t, condition)
        h = self.input(x, emb)
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                h = self.pool(h)
            h = block(h, emb)
            skips.append(h)
        for i, (reduce, block) in enumerate(zip(self.reduce, self.up)):
            level = len(self.down) - 2 - i
            h = F.interpolate(h, scale_factor=tuple(self.pooling), mode="nearest")
            h = reduce(h, emb)
            h = (h + skips[level]) * math.sqrt(0.5)
            h = block(h, emb)
        return self.output(h)


def subvp_std(t, beta_min=0.1, beta_max=20.0):
    twice_log_mean = -0.5 * t * t * (beta_max - beta_min) - t * beta_min
    return -torch.expm1(twice_log_mean), torch.exp(0.5 * twice_log_mean)


def dsm_loss(model, x0, condition):
    t = torch.rand(x0.shape[0]) * (1 - 1e-5) + 1e-5
    z = torch.randn_like(x0)
    std, mean = subvp_std(t)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    xt = x0 * mean.reshape(shape) + z * std.reshape(shape)
    score = model(xt, t, condition) / std.reshape(shape)
    return (score * std.reshape(shape) + z).square().mean()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--mode", choices=["train", "score"], default="train")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = json.loads(args.config)
    model = UNet(config)
    x = torch.randn(args.batch, *config["inputShape"])
    condition = torch.rand(args.batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        if args.mode == "train":
            optimizer.zero_grad()
            dsm_loss(model, x, condition).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                t = torch.full((args.batch,), 0.5)
                std, _ = subvp_std(t)
                model(x, t, condition) / std.reshape((-1,) + (1,) * (x.dim() - 1))

    if args.mode == "score":
        model.eval()
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({
        "step_ms": seconds * 1000,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
