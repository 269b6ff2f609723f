"""Reproduces docs/units.md#whole-code-or-kept-channel: per-filter textures, whole code against kept channel.

Do the unit atlas's per-filter textures carry their channel, and what do they cost? On the shared
alexnet-slim, 12 pool5 channels (every 11th), the texture of each (Xia et al.: the top image's pool5
map with every other channel zeroed, inverted), solved once by matching the whole one-channel code
in raw pixels (`whole-code`: 16 steps at lr 0.1 from noise of std 0.5) and once as the unit step
does (`defaults`: the catalog defaults, units_run.texture_problem):

- channel error: ||pool5[c](x) - t_c|| / ||t_c|| on the kept channel's map t_c (median, range, and
  how many channels stay >= 0.99, i.e. silent like a grey image, which scores 1.0);
- code error: ||pool5(x) - t|| / ||t|| on the whole one-channel code t (the zeroed channels count):
  what `whole-code` optimizes; the top image itself is far from its own code (channels co-fire);
- noise: generator.methods.metrics.high_frequency_share (white noise ~0.8, the catalog photos 0.03);
- distinct: mean RMS pixel distance between two channels' textures (each minus its mean);
- cost: CPU seconds per texture (process time), and for every pool5 channel of the net.

    python -m benchmarks.studies.units_textures   # prints a table; benchmarks/out/units_textures.{json,png}
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch
from torch import Tensor

from benchmarks.common import OUT, contact_sheet, print_table, shared_units_dataset, write_json
from generator.engine.settings import RAW_PIXELS, settings_from
from generator.engine.solve import solve
from generator.engine.terms import feature_error
from generator.methods.common import inversion_problem
from generator.methods.metrics import high_frequency_share
from generator.units import UnitsParams
from generator.units import run as units_run

CHANNELS = list(range(0, 128, 11))
WHOLE_CODE = dict(iterations=16, lr=0.1, init_std=0.5, jitter=0, **RAW_PIXELS)


def distinct(images: Tensor) -> float:
    flat = (images - images.mean((1, 2, 3), keepdim=True)).flatten(1)
    n = len(flat)
    return float(torch.cdist(flat, flat).sum() / flat.shape[1] ** 0.5 / (n * (n - 1)))


def main() -> None:
    catalog, pathway, data = shared_units_dataset()
    rows_of = data.values["pool5"][:, CHANNELS].argmax(0).tolist()
    tops = data.images[rows_of]
    with torch.no_grad():
        pool5 = pathway.trunk(tops)
    codes = torch.stack([units_run.texture_target(pool5[i], c) for i, c in enumerate(CHANNELS)])
    maps = pool5[torch.arange(len(CHANNELS)), torch.tensor(CHANNELS)]

    params = UnitsParams()
    whole = settings_from(catalog.engine, **WHOLE_CODE)
    defaults = units_run.texture_settings(catalog.engine, params)
    solvers = {
        "whole-code": lambda: solve(pathway, [inversion_problem(pathway, whole, codes[i], seed=c)
                                              for i, c in enumerate(CHANNELS)], whole, progress=False),
        "defaults": lambda: solve(pathway, [units_run.texture_problem(pathway, tops[i], c, defaults, params.texture_start_std,
                                                                      seed=c) for i, c in enumerate(CHANNELS)], defaults, progress=False),
    }
    pictures = {"grey": torch.full_like(tops, 0.5), "top image": tops}
    seconds = {}
    for name, run in solvers.items():
        start = time.process_time()
        pictures[name] = torch.stack([s.image for s in run()])
        seconds[name] = (time.process_time() - start) / len(CHANNELS)
    rows = []
    for name, images in pictures.items():
        channel = units_run.texture_errors(pathway, images, maps, CHANNELS)
        with torch.no_grad():
            code = feature_error(pathway.trunk(images), codes).tolist()
        rows.append({"settings": name, "channel_error": statistics.median(channel), "min": min(channel),
                     "max": max(channel), "silent": sum(e >= 0.99 for e in channel), "code_error": statistics.median(code),
                     "high_freq": float(high_frequency_share(images).mean()), "distinct": distinct(images),
                     "cpu_s_per_texture": seconds.get(name, 0.0),
                     "cpu_s_all_pool5": seconds.get(name, 0.0) * pathway.pool5_shape[0]})
    print_table(rows, list(rows[0]))
    print(f"default settings: {dataclasses.asdict(defaults)}")
    write_json("units_textures", {"channels": CHANNELS, "rows": rows})
    boxes = units_run.receptive_fields(pathway)
    width = pathway.pool5_shape[2]
    patches = []
    for i, c in enumerate(CHANNELS):
        top, left, bottom, right = boxes[divmod(int(data.where[rows_of[i], c]), width)].tolist()
        patches.append(tops[i][:, top:bottom, left:right])
    sheet = [[tops[i], patches[i], pictures["whole-code"][i], pictures["defaults"][i]] for i in range(len(CHANNELS))]
    path = contact_sheet(sheet, OUT / "units_textures.png", [f"pool5 {c}" for c in CHANNELS])
    print(f"columns: top image, top patch, whole-code texture, default texture -> {path}")


if __name__ == "__main__":
    main()
