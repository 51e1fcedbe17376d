"""Benchmark 6, training throughput: `resnet-train` against a minimal plain PyTorch loop, same run.

    python -m bench.train_bench --steps 60
    python -m bench.train_bench --options --steps 30     # what each speed option of the trainer is worth

`--options` measures, in fresh processes taking turns, the model step alone (fp32, channels-last, bf16
autocast, both, torch.compile, batch 256) and the input pipeline alone (per-sample DataLoader with per-image
augmentation loops, as the trainer did before, against whole-batch indexing with batched augmentation).

Both train resnet20 on Fashion-MNIST (the shipped model's recipe) with batch 128, SGD (momentum 0.9,
Nesterov, weight decay 5e-4) and 2 intra-op threads, in fresh processes, taking turns (A B A B) so that
drift of the machine hits both. Images/s counts the training loop only (not evaluation or startup).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench.common import WORKDIR, median, print_table, warn_if_busy, write_results


def plain_loop(steps: int, batch: int, threads: int, data_dir: str, arch: str) -> float:
    """The least a training loop can do: index, scale, normalize, forward, loss, backward, step."""
    import torch
    import torch.nn.functional as F

    from models import create_model
    from training.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images, labels = load_fashion_mnist(data_dir, "train")
    x_all = torch.from_numpy(images).unsqueeze(1)
    y_all = torch.from_numpy(labels)
    model = create_model(arch, num_classes=10, in_channels=1, small_input=True).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    perm = torch.randperm(len(y_all))
    mean, std = FASHION_MNIST_MEAN[0], FASHION_MNIST_STD[0]
    t0 = time.perf_counter()
    for i in range(steps):
        idx = perm[i * batch : (i + 1) * batch]
        x = (x_all[idx].float() / 255.0 - mean) / std
        loss = F.cross_entropy(model(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return steps * batch / (time.perf_counter() - t0)


def option_step(steps: int, batch: int, threads: int, arch: str, *, channels_last: bool, bf16: bool,
                compile_model: bool) -> float:
    """Images/s of forward + backward + SGD step on random 1x28x28 data (the model side of training only)."""
    import torch
    import torch.nn.functional as F

    from models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=1, small_input=True).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    run = torch.compile(model) if compile_model else model
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(run(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    for _ in range(5):  # warm-up (and compilation)
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def option_input(steps: int, batch: int, threads: int, data_dir: str, *, batched: bool) -> float:
    """Images/s of the input side alone: fetch a batch, pad-crop + flip, random erasing (p=0.5)."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler
    from torchvision.transforms import v2

    from training.augment import pad_crop_flip, random_erasing
    from training.data import ArrayDataset, WholeBatches, load_fashion_mnist

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images, labels = load_fashion_mnist(data_dir, "train")
    data = ArrayDataset(images, labels)
    if batched:
        loader = DataLoader(WholeBatches(data), batch_size=None,
                            sampler=BatchSampler(RandomSampler(data), batch, drop_last=True))
    else:
        loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    eraser = v2.RandomErasing(p=0.5, value="random")
    t0, n = time.perf_counter(), 0
    for i, (x, _) in enumerate(loader):
        if i >= steps:
            break
        x = x.float() / 255
        if batched:
            x = random_erasing(pad_crop_flip(x, 2, True), 0.5)
        else:  # what the trainer did before: one slice per image, one RandomErasing call per image
            padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
            oy, ox = torch.randint(0, 5, (len(x),)).tolist(), torch.randint(0, 5, (len(x),)).tolist()
            x = torch.stack([padded[j, :, oy[j]:oy[j] + 28, ox[j]:ox[j] + 28] for j in range(len(x))])
            x = torch.stack([eraser(img) for img in x])
        n += len(x)
    return n / (time.perf_counter() - t0)


OPTIONS = {
    "model step: fp32": dict(channels_last=False, bf16=False, compile_model=False),
    "model step: channels-last": dict(channels_last=True, bf16=False, compile_model=False),
    "model step: bf16 autocast": dict(channels_last=False, bf16=True, compile_model=False),
    "model step: bf16 + channels-last (the default where bf16 is native)": dict(channels_last=True, bf16=True,
                                                                                 compile_model=False),
    "model step: bf16 + channels-last + torch.compile": dict(channels_last=True, bf16=True, compile_model=True),
}


def run_option(name: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "bench.train_bench", "--_option", name, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--data", args.data,
           "--arch", args.arch]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def measure_option(name: str, args: argparse.Namespace) -> float:
    if name.startswith("input:"):
        return option_input(args.steps * 4, args.batch_size, args.threads, args.data, batched="batched" in name)
    if name.startswith("batch 256:"):
        return option_step(args.steps, 256, args.threads, args.arch, **OPTIONS[name.removeprefix("batch 256: ")])
    return option_step(args.steps, args.batch_size, args.threads, args.arch, **OPTIONS[name])


def options_table(args: argparse.Namespace) -> None:
    names = [*OPTIONS, "batch 256: model step: bf16 + channels-last (the default where bf16 is native)",
             "input: per-sample DataLoader + per-image augmentation (before)",
             "input: whole-batch indexing + batched augmentation (now)"]
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        for name in names:
            samples[name].append(run_option(name, args))
            print(f"round {r + 1}: {name:>80}: {samples[name][-1]:8.1f} img/s", flush=True)
    fp32 = median(samples["model step: fp32"])
    before = median(samples[names[-2]])
    rows = [{"variant": k, "images_per_s": median(v), "runs": ", ".join(f"{s:.0f}" for s in v),
             "ratio": median(v) / (before if k.startswith("input:") else fp32)} for k, v in samples.items()]
    print_table(rows, ["variant", "images_per_s", "runs", "ratio"],
                f"training options, {args.arch} on 28x28, batch {args.batch_size}, {args.threads} threads "
                "(ratio: model rows vs fp32, input rows vs before)")
    write_results(args.name + "_options", {"benchmark": "train_options", "config": {
        k: v for k, v in vars(args).items() if not k.startswith("_")}, "rows": rows})


# resnet-train variants: "same work" turns its default augmentation (pad-crop + flip) off, like the plain loop.
VARIANTS = {
    "resnet-train --workers 0, no augmentation (same work)": ["--workers", "0", "--pad", "0", "--no-hflip"],
    "resnet-train --workers 0 (default augmentation)": ["--workers", "0"],
    "resnet-train --workers 2 (defaults)": ["--workers", "2"],
}


def run_resnet_train(steps: int, batch: int, threads: int, data_dir: str, arch: str, extra: list[str]) -> float:
    out = WORKDIR / "train-bench" / "run"
    cmd = [sys.executable, "-m", "training.train", "--data", data_dir, "--arch", arch, "--epochs", "1",
           "--max-steps-per-epoch", str(steps), "--batch-size", str(batch), "--threads", str(threads),
           "--no-progress", "--out", str(out), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows[-1]["images_per_s"]


def run_plain(steps: int, batch: int, threads: int, data_dir: str, arch: str) -> float:
    cmd = [sys.executable, "-m", "bench.train_bench", "--_plain", "--steps", str(steps), "--batch-size", str(batch),
           "--threads", str(threads), "--data", data_dir, "--arch", arch]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))),
                   help=f"indices into {list(VARIANTS)}")
    p.add_argument("--name", default="train")
    p.add_argument("--options", action="store_true", help="measure each speed option of the trainer instead")
    p.add_argument("--_plain", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_option", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._plain:
        print(plain_loop(args.steps, args.batch_size, args.threads, args.data, args.arch))
        return
    if args._option:
        print(measure_option(args._option, args))
        return
    if args.options:
        warn_if_busy()
        options_table(args)
        return

    warn_if_busy()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    common = (args.steps, args.batch_size, args.threads, args.data, args.arch)
    variants = {"plain loop": lambda: run_plain(*common)}
    for i in (int(v) for v in args.variants.split(",")):
        name, extra = list(VARIANTS.items())[i]
        variants[name] = lambda extra=extra: run_resnet_train(*common, extra=extra)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.repeats):
        for name, fn in variants.items():
            samples[name].append(fn())
            print(f"round {r + 1}: {name:>55}: {samples[name][-1]:7.1f} img/s", flush=True)
    plain = median(samples["plain loop"])
    rows = [{"variant": k, "images_per_s": median(v), "runs": ", ".join(f"{s:.0f}" for s in v),
             "vs_plain": median(v) / plain} for k, v in samples.items()]
    print_table(rows, ["variant", "images_per_s", "runs", "vs_plain"],
                f"training {args.arch} on Fashion-MNIST, batch {args.batch_size}, {args.threads} threads, "
                f"{args.steps} steps")
    write_results(args.name, {"benchmark": "train", "config": {k: v for k, v in vars(args).items() if k != "_plain"},
                              "rows": rows})


if __name__ == "__main__":
    main()
