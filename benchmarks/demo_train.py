"""Demo world: how long the demo CNN takes to train here, and what it learns.

    python -m benchmarks.demo_train [--epochs 6] [--seed 0]

Draws the world in memory (no cache is touched), trains the demo CNN exactly as `ensure_demo`
does, and reports: drawing and training seconds (with the thread count: the machine may be
shared), held-out top-1, and the two planted-truth checks the atlas's tests rely on:
  - topics: NMI between the argmax NMF topic of fc7 (K = #styles, 50 images) and the style
  - location: whether the 2x2 pool5 window with the highest mean class score lies on the layout
Targets: training <= 120 s on 2 cores, held-out >= 0.90, every NMI >= 0.7, every window on
its layout. Writes benchmarks/out/demo_train.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from sklearn.decomposition import NMF
from sklearn.metrics import normalized_mutual_info_score

from benchmarks.common import print_table, write_json
from generator import demo
from generator.methods.location import window_mask
from generator.nets.pathway import Pathway


def planted_truth_checks(pathway: Pathway, seed: int) -> list[dict]:
    """Per class: NMI of fc7 topics vs styles, and the best pool5 window vs the layout."""
    images, labels, styles = demo.split_tensors("world", 50, seed)
    styles = np.array(styles)
    rows = []
    for index, demo_class in enumerate(demo.CLASSES):
        mine = (labels == index).nonzero().flatten()
        with torch.no_grad():
            acts = pathway(images[mine])
            windows = {(r, c): window_mask(pathway.pool5_shape, 2 * r, 2 * c, 2) for r in range(3) for c in range(3)}
            scores = {at: float(pathway.head(acts.pool5, {"pool5": mask}).fc8[:, index].mean()) for at, mask in windows.items()}
        k = len(demo_class.styles)
        loadings = NMF(k, init="nndsvda", max_iter=1000, random_state=0).fit_transform(acts.fc7.numpy())
        best = max(scores, key=scores.get)
        rows.append({
            "class": demo_class.id, "styles": k,
            "nmi": round(normalized_mutual_info_score(styles[mine.numpy()], loadings.argmax(1)), 3),
            "best_window": list(best), "on_layout": best in demo.layout_windows_of(demo_class.layout),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=demo.TrainConfig().epochs)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    train_x, train_y, train_styles = demo.split_tensors("train", demo.TRAIN_PER_CLASS, args.seed)
    test_x, test_y, _ = demo.split_tensors("heldout", demo.HELDOUT_PER_CLASS, args.seed)
    draw_seconds = time.perf_counter() - start
    mean, std = demo.channel_stats(train_x)
    config = dataclasses.replace(demo.TrainConfig(), epochs=args.epochs, seed=args.seed)
    start = time.perf_counter()
    model = demo.train_model(train_x, train_y, mean, std, config, progress=True,
                             substyles=demo.substyle_labels(train_y, train_styles))
    train_seconds = time.perf_counter() - start
    accuracy = demo.accuracy(model, test_x, test_y, mean, std)
    rows = planted_truth_checks(Pathway(model, mean, std, demo.IMAGE_SIZE), args.seed)

    print(f"drew {len(train_x) + len(test_x)} images in {draw_seconds:.1f}s; trained {args.epochs} epochs "
          f"on {len(train_x)} images in {train_seconds:.1f}s; "
          f"held-out accuracy {accuracy:.1%}")
    print_table(rows, ["class", "styles", "nmi", "best_window", "on_layout"])
    write_json("demo_train", {"draw_seconds": round(draw_seconds, 2), "train_seconds": round(train_seconds, 2),
                                   "epochs": args.epochs,
                                   "heldout_accuracy": accuracy, "classes": rows})


if __name__ == "__main__":
    main()
