#!/usr/bin/env python3
"""Train QuantGate's convolutional example: a small CNN on synthetic shape images made here, offline.

  1. Images: 24x24 RGB pictures of four shapes (circle, square, triangle, cross) with random size,
     position, colours and pixel noise, drawn with numpy and written as PNG with Pillow. Training
     images stay in memory; 96 evaluation and 32 calibration images are written under eval/ and
     calib/ as <class>/<index>.png (the folder name is the label, classes in sorted order).
  2. Preprocessing (the same spec quantgate.yml gives): scale by 1/255, subtract mean 0.5 and divide
     by std 0.25 per channel, NCHW, RGB order.
  3. Model: Conv3x3(3->16) ReLU MaxPool, Conv3x3(16->32) ReLU, depthwise Conv3x3(32, groups 32) ReLU,
     pointwise Conv1x1(32->64) ReLU MaxPool, Flatten, Linear(64*6*6 -> 64) ReLU, Linear(64 -> 4).
  4. Export: torch.onnx.export opset 13, input `image` float32 [batch, 3, 24, 24], output `logits`
     [batch, 4]; then every initializer is turned into a Constant node (as some exporters and
     converters write weights), so QuantGate must find weights that are not initializers.

Run from the repository root with Debian's python (torch 1.13, onnx, Pillow):

    /usr/bin/python3 examples/cnn-classifier/train.py
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["circle", "cross", "square", "triangle"]
SIZE = 24
MEAN, STD = 0.5, 0.25


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    r = rng.uniform(4.5, 9.0)
    cx, cy = rng.uniform(r + 1, SIZE - r - 1, size=2)
    if kind == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif kind == "square":
        mask = (np.abs(xx - cx) <= r * 0.8) & (np.abs(yy - cy) <= r * 0.8)
    elif kind == "cross":
        w = max(1.2, r * 0.3)
        mask = ((np.abs(xx - cx) <= w) & (np.abs(yy - cy) <= r)) | ((np.abs(yy - cy) <= w) & (np.abs(xx - cx) <= r))
    else:  # triangle pointing up
        top, bottom = cy - r, cy + r
        half = (yy - top) / (2 * r) * r
        mask = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)
    bg = rng.uniform(0, 110, size=3)
    fg = rng.uniform(140, 255, size=3)
    if rng.random() < 0.5:
        bg, fg = fg, bg
    img = np.where(mask[..., None], fg, bg) + rng.normal(0, 18, size=(SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def dataset(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), size=count)
    images = np.stack([draw(CLASSES[c], rng) for c in labels])
    return images, labels


def preprocess(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.dw = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.pw = torch.nn.Conv2d(32, 64, 1)
        self.fc1 = torch.nn.Linear(64 * 6 * 6, 64)
        self.fc2 = torch.nn.Linear(64, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.dw(x))
        x = torch.nn.functional.max_pool2d(torch.relu(self.pw(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def write_pngs(folder: str, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (img, c) in enumerate(zip(images, labels)):
        d = os.path.join(HERE, folder, CLASSES[c])
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img, "RGB").save(os.path.join(d, f"{i:03d}.png"), optimize=True)


def initializers_to_constants(model: onnx.ModelProto) -> None:
    graph = model.graph
    consts = [helper.make_node("Constant", [], [t.name], name=f"Constant_{t.name}", value=t) for t in graph.initializer]
    names = {t.name for t in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    del graph.initializer[:]
    nodes = consts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train_x, train_y = dataset(6000, 1)
    eval_x, eval_y = dataset(96, 2)
    calib_x, calib_y = dataset(32, 3)
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    xt = torch.from_numpy(preprocess(train_x))
    yt = torch.from_numpy(train_y)
    xe = torch.from_numpy(preprocess(eval_x))
    for epoch in range(8):
        perm = torch.randperm(len(xt))
        net.train()
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(xe).argmax(1).numpy() == eval_y).mean())
        print(f"epoch {epoch}: loss {loss.item():.3f} eval accuracy {acc:.3f}", flush=True)
    write_pngs("eval", eval_x, eval_y)
    write_pngs("calib", calib_x, calib_y)
    path = os.path.join(HERE, "model.onnx")
    torch.onnx.export(
        net,
        torch.zeros(1, 3, SIZE, SIZE),
        path,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
    )
    model = onnx.load(path)
    initializers_to_constants(model)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    with torch.no_grad():
        logits = net(xe[:4]).numpy()
    stats = {"eval_accuracy": acc, "classes": CLASSES, "reference_logits_first4": logits.round(5).tolist(),
             "params": sum(p.numel() for p in net.parameters())}
    with open(os.path.join(HERE, "train_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats), file=sys.stderr)


if __name__ == "__main__":
    main()
