"""The network's own pass: forward + backward to the input, per family, eager against folded.

    python -m benchmarks.net_speed [--threads 1,2] [--batch 8] [--size 224] [--steps 3]
                                   [--families alexnet,vgg16,...] [--channels-last] [--compile] [--bf16]

For AlexNet, VGG16, ResNet-50, MobileNet-v2, EfficientNet-B0 and ConvNeXt-T at random init
(speed does not depend on the weights), as the engine runs them (a Pathway, parameters frozen,
the gradient to the input only): ms per image of the eager torchvision model and of the same
model with its batch norms folded into the convolutions (generator/nets/fold.py, what `load_pathway`
gives), the speedup, and GFLOP/s against the CPU's peak. FLOPs are counted by
torch.utils.flop_counter.FlopCounterMode for one forward + backward; the peak is estimated as
cores x GHz x fp32 FLOPs per cycle from lscpu's flags (printed). The variants' steps are
interleaved and the median taken, so a load that comes and goes hits each alike; on a shared
machine only the ratios of one run mean anything. `--channels-last` and `--compile` add the
folded model in channels-last memory and under torch.compile (compile time printed apart); `--bf16`
the folded channels-last model with its forward under CPU bf16 autocast.
Writes benchmarks/out/net_speed.json.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import subprocess
import time
from typing import Any, Callable

import torch
import torchvision
from torch import Tensor

from benchmarks.common import print_table, write_json
from generator.nets.fold import fold_batchnorm
from generator.nets.pathway import Pathway

FAMILIES = {"alexnet": "alexnet", "vgg16": "vgg16", "resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2",
            "efficientnet_b0": "efficientnet_b0", "convnext_tiny": "convnext_tiny"}

Step = Callable[[], None]


def cpu_peak(cores: int) -> tuple[float, str]:
    """(GFLOP/s, how it was estimated): cores x GHz x fp32 FLOPs per cycle (AVX-512: 32, AVX2: 16,
    else 8), from lscpu's flags and its or /proc/cpuinfo's clock."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    flags = re.search(r"^Flags:\s*(.*)$", text, re.M)
    have = set(flags.group(1).split()) if flags else set()
    per_cycle, unit = (32, "AVX-512") if "avx512f" in have else (16, "AVX2") if "avx2" in have else (8, "SSE")
    found = re.search(r"^CPU max MHz:\s*([\d.]+)", text, re.M)
    if found is None:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
    ghz = float(found.group(1)) / 1000 if found else 2.5
    return cores * ghz * per_cycle, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} fp32 FLOPs/cycle ({unit} FMA)"


def pathways(name: str, size: int) -> tuple[Pathway, Pathway]:
    """The eager torchvision model and a copy with its batch norms folded, as Pathways."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    folded = fold_batchnorm(copy.deepcopy(model))
    return Pathway(model, input_size=size), Pathway(folded, input_size=size)


def fwd_bwd(pathway: Any, images: Tensor, bf16: bool = False) -> Step:
    """One forward + backward of a class score to the input, as a solve step runs the net (the
    forward under bf16 autocast with `bf16`)."""
    targets = (torch.arange(images.shape[0]) % getattr(pathway, "num_classes", 1000)).to(images.device)

    def step() -> None:
        images.grad = None
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
            scores = pathway(images).fc8.gather(1, targets[:, None]).sum()
        scores.float().backward()
    return step


def flops(step: Step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def interleaved_ms(steps: dict[str, Step], rounds: int) -> dict[str, float]:
    """Median seconds of each step over `rounds`, the variants taking turns (one warm-up each)."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def variants(name: str, args: argparse.Namespace) -> tuple[dict[str, Step], dict[str, float]]:
    """The steps to time for one family (eager, folded, ...) and the seconds any compile took."""
    images = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    eager, folded = pathways(name, args.size)
    steps = {"eager": fwd_bwd(eager, images.clone().requires_grad_(True))}
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in eager.modules())
    if has_bn:
        steps["folded"] = fwd_bwd(folded, images.clone().requires_grad_(True))
    if args.channels_last:
        last = copy.deepcopy(folded).to(memory_format=torch.channels_last)
        steps["channels_last"] = fwd_bwd(last, images.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True))
    if args.bf16:
        last = copy.deepcopy(folded).to(memory_format=torch.channels_last)
        steps["bf16"] = fwd_bwd(last, images.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True),
                                bf16=True)
    compiled_s = {}
    if args.compile:
        compiled = torch.compile(folded)
        step = fwd_bwd(compiled, images.clone().requires_grad_(True))
        start = time.perf_counter()
        step()
        compiled_s[name] = time.perf_counter() - start
        steps["compiled"] = step
    return steps, compiled_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant after a warm-up")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--channels-last", action="store_true", help="also the folded model in channels-last memory")
    parser.add_argument("--compile", action="store_true", help="also the folded model under torch.compile")
    parser.add_argument("--bf16", action="store_true", help="also the folded channels-last model under bf16 autocast "
                        "(AVX-512 BF16 or AMX CPUs; elsewhere emulated)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()
    rows, compile_s = [], {}
    for name in args.families.split(","):
        steps, compiled = variants(FAMILIES.get(name, name), args)
        compile_s.update(compiled)
        work = flops(next(iter(steps.values())))
        for count in threads:
            torch.set_num_threads(count)
            seconds = interleaved_ms(steps, args.steps)
            peak, _ = cpu_peak(count)
            for variant, s in seconds.items():
                rate = work / s / 1e9
                rows.append({"family": name, "threads": count, "variant": variant,
                             "ms/image": 1000 * s / args.batch, "speedup": seconds["eager"] / s,
                             "GFLOP/s": rate, "of peak": rate / peak})
    print(f"forward + backward to the input, batch {args.batch}, {args.size} px, median of {args.steps} interleaved steps")
    print(f"peak: {cpu_peak(1)[1]} per thread; load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print_table(rows, ["family", "threads", "variant", "ms/image", "speedup", "GFLOP/s", "of peak"])
    for name, s in compile_s.items():
        print(f"torch.compile of {name}: first step {s:.0f} s (compile + run)")
    path = write_json("net_speed", {"batch": args.batch, "size": args.size, "steps": args.steps, "rows": rows,
                                    "compile_s": compile_s, "peak_assumption": cpu_peak(1)[1],
                                    "load": [load_before[0], os.getloadavg()[0]]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
