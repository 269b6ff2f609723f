"""The judge: a second, independent ImageNet network (MobileNetV1 0.75, 192 px, int8 TFLite in
../shared/models/judge/) that reads the atlas's pictures. A picture it reads as the class shows
the class to more than the network that made it.

Benchmark-only: needs the `judge` extra (`pip install -e '.[judge]'`, i.e. ai-edge-litert).

    judge = Judge.load()
    reading = judge.read(images)          # (B,3,H,W) in [0,1] or PIL images
    reading.logits    # (B, 1000) ILSVRC-2012 order (the model's background class dropped)
    reading.probs     # (B, 1000) their softmax
    reading.features  # (B, 768) average-pool features, dequantized

The scores are the model's last layer (a 1x1 convolution on the pooled features) recomputed in
float from its dequantized weights: the model's own uint8 softmax rounds every probability below
1/256 to 0, and synthetic pictures give the true class less than that, so on them its output
ties the classes at zero and an argmax would pick whichever class comes first.
"""
from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATLAS_SHARED", REPO.parent / "shared"))
JUDGE_DIR = SHARED / "models" / "judge"
MODEL_FILE = "mobilenet_v1_0.75_192_quant.tflite"
FEATURE_TENSOR = "MobilenetV1/Logits/AvgPool_1a/AvgPool"
LOGITS_PREFIX = "MobilenetV1/Logits/Conv2d_1c_1x1/"  # its weights (uint8) and biases (int32) tensors
CLASSES_TSV = REPO / "generator" / "data" / "imagenet_classes.tsv"
INSTALL_HINT = "the judge needs ai-edge-litert: pip install -e '.[judge]' (or pip install ai-edge-litert)"


def available() -> str | None:
    """None when the judge can run here, else why not (one line)."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    if not (JUDGE_DIR / MODEL_FILE).is_file():
        return f"the judge model is missing: {JUDGE_DIR / MODEL_FILE} (set ATLAS_SHARED)"
    return None


def wnid_indices() -> dict[str, int]:
    """wnid -> index among the judge's 1000 classes (the standard ILSVRC-2012 order; the
    model's own output 0 is 'background', which `Judge.read` drops)."""
    with open(CLASSES_TSV, newline="") as f:
        return {row["wnid"]: int(row["index"]) for row in csv.DictReader(f, delimiter="\t")}


def to_judge_input(image: Image.Image | np.ndarray | object, size: int = 192) -> np.ndarray:
    """uint8 (size, size, 3): shorter side resized to `size`, centre-cropped, as the model was fed."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255)  # type: ignore[attr-defined]
        image = Image.fromarray(array.round().astype(np.uint8))
    image = image.convert("RGB")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


@dataclass
class Reading:
    logits: np.ndarray  # (B, 1000) class scores over the ILSVRC classes (background dropped)
    features: np.ndarray  # (B, 768) average-pool features

    @property
    def probs(self) -> np.ndarray:
        shifted = np.exp(self.logits - self.logits.max(1, keepdims=True))
        return shifted / shifted.sum(1, keepdims=True)

    def top(self, k: int = 5) -> np.ndarray:
        """(B, k) class indices, most probable first."""
        return np.argsort(-self.logits, axis=1)[:, :k]

    def top1_among(self, candidates: Sequence[int]) -> np.ndarray:
        """(B,) the most probable class of `candidates` (indices into the 1000) per image."""
        among = np.asarray(candidates)
        return among[np.argmax(self.logits[:, among], axis=1)]


class Judge:
    """One TFLite interpreter; `read` runs it image by image (the model's batch is 1)."""

    def __init__(self, folder: Path = JUDGE_DIR, threads: int = 1) -> None:
        why = available() if folder == JUDGE_DIR else None
        if why:
            raise RuntimeError(why)
        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():  # preserve_all_tensors is "for debugging": we need the pooled features
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = Interpreter(
                model_path=str(folder / MODEL_FILE), num_threads=threads, experimental_preserve_all_tensors=True
            )
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        details = self.interpreter.get_tensor_details()
        self.feature = next(d for d in details if d["name"] == FEATURE_TENSOR)
        last = [d for d in details if d["name"].startswith(LOGITS_PREFIX) and len(d["shape"]) in (1, 4)]
        weights = next(d for d in last if len(d["shape"]) == 4 and d["shape"][-1] == self.feature["shape"][-1])
        biases = next(d for d in last if len(d["shape"]) == 1 and d["dtype"] == np.int32)
        # (1000, 768) and (1000,) in float, without the background class (row 0)
        self.weights = _dequantize(self.interpreter.get_tensor(weights["index"]), weights).reshape(-1, self.feature["shape"][-1])[1:]
        self.biases = _dequantize(self.interpreter.get_tensor(biases["index"]), biases)[1:]
        self.size = int(self.input["shape"][1])

    @classmethod
    def load(cls, threads: int = 1) -> Judge:
        return cls(JUDGE_DIR, threads)

    def read(self, images: Sequence) -> Reading:
        """Class probabilities and pooled features of images ((B,3,H,W) tensors in [0,1] or PIL)."""
        features = []
        for image in images:
            self.interpreter.set_tensor(self.input["index"], to_judge_input(image, self.size)[None])
            self.interpreter.invoke()
            features.append(_dequantize(self.interpreter.get_tensor(self.feature["index"]), self.feature).reshape(-1))
        pooled = np.stack(features) if features else np.zeros((0, self.weights.shape[1]), np.float32)
        return Reading(logits=pooled @ self.weights.T + self.biases, features=pooled)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return (values.astype(np.float32) - zero) * scale if scale else values.astype(np.float32)
