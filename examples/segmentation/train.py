#!/usr/bin/env python3
"""Train QuantGate's segmentation example: a small U-Net on generated shapes over noisy backgrounds.

  1. Images: 64x64 RGB, a smooth random colour gradient plus Gaussian pixel noise as background,
     with one to three shapes on top (a later shape covers an earlier one): disks (class 1) and
     axis-aligned rectangles (class 2) of random size, position and colour, drawn with numpy.
     Masks: one class index per pixel (0 background, 1 disk, 2 rectangle). Training images stay in
     memory; 48 evaluation and 16 calibration images are written as eval/NNN.png and
     calib/NNN.png, the evaluation masks as masks/NNN.png (8-bit grey, pixel value = class index),
     and eval/labels.csv maps each image to its mask (file,mask).
  2. Preprocessing (the same spec quantgate.yml gives): RGB, scale 1/255, mean 0.5, std 0.25, NCHW.
  3. Model: a two-level U-Net: encoder Conv3x3 blocks of 12, 24 and 48 channels with 2x2 max
     pooling, decoder with nearest 2x upsampling, skip concatenation and Conv3x3 blocks, and a 1x1
     convolution to 3 class logits. Output `logits` [N, 3, 64, 64] (class axis 1).
  4. Training: per-pixel cross-entropy, AdamW, one thread.
  5. Export: torch.onnx.export opset 13, input `image` [batch, 3, 64, 64], output `logits`.

Run from the repository root with Debian's python (torch 1.13, onnx, Pillow):

    nice -n 10 /usr/bin/python3 examples/segmentation/train.py
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 64
CLASSES = ["background", "disk", "rectangle"]
MEAN, STD = 0.5, 0.25


def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    c0, cx, cy = rng.uniform(0, 255, size=3), rng.uniform(-120, 120, size=3), rng.uniform(-120, 120, size=3)
    img = c0 + xx[..., None] * cx + yy[..., None] * cy
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(1, 3))
        if kind == 1:
            r = rng.uniform(5, 15)
            x0, y0 = rng.uniform(r - 4, SIZE - r + 4, size=2)
            shape = (xx - x0) ** 2 + (yy - y0) ** 2 <= r * r
        else:
            w, h = rng.uniform(8, 30, size=2)
            x0, y0 = rng.uniform(-4, SIZE - w + 4), rng.uniform(-4, SIZE - h + 4)
            shape = (xx >= x0) & (xx <= x0 + w) & (yy >= y0) & (yy <= y0 + h)
        colour = rng.uniform(0, 255, size=3)
        img = np.where(shape[..., None], colour, img)
        mask[shape] = kind
    img = img + rng.normal(0, 20, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def dataset(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [sample(rng) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def preprocess(images: np.ndarray) -> np.ndarray:
    x = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def block(cin: int, cout: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(cout, cout, 3, padding=1), torch.nn.ReLU()
    )


class UNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e1, self.e2, self.e3 = block(3, 12), block(12, 24), block(24, 48)
        self.d2, self.d1 = block(48 + 24, 24), block(24 + 12, 12)
        self.head = torch.nn.Conv2d(12, len(CLASSES), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional
        a = self.e1(x)
        b = self.e2(f.max_pool2d(a, 2))
        c = self.e3(f.max_pool2d(b, 2))
        d = self.d2(torch.cat([f.interpolate(c, scale_factor=2.0, mode="nearest"), b], 1))
        e = self.d1(torch.cat([f.interpolate(d, scale_factor=2.0, mode="nearest"), a], 1))
        return self.head(e)


def iou_dice(pred: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Pooled over the set, averaged over the foreground classes."""
    ious, dices = [], []
    for k in range(1, len(CLASSES)):
        p, m = pred == k, mask == k
        inter, union = float((p & m).sum()), float((p | m).sum())
        ious.append(inter / union)
        dices.append(2 * inter / (p.sum() + m.sum()))
    return float(np.mean(ious)), float(np.mean(dices))


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train_x, train_y = dataset(4000, 1)
    eval_x, eval_y = dataset(48, 2)
    calib_x, _ = dataset(16, 3)
    xt, yt = torch.from_numpy(preprocess(train_x)), torch.from_numpy(train_y.astype(np.int64))
    xe = torch.from_numpy(preprocess(eval_x))
    net = UNet()
    params = sum(p.numel() for p in net.parameters())
    print(f"params {params}", flush=True)
    steps = int(os.environ.get("STEPS", "2500"))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps, pct_start=0.1)
    start = time.time()
    history = []
    for step in range(steps):
        idx = torch.randint(0, len(xt), (16,))
        loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            net.eval()
            with torch.no_grad():
                iou, dice = iou_dice(net(xe).argmax(1).numpy(), eval_y)
            net.train()
            history.append({"step": step, "loss": round(loss.item(), 4), "eval_iou": round(iou, 4), "eval_dice": round(dice, 4)})
            print(f"step {step}: loss {loss.item():.3f} eval IoU {iou:.4f} Dice {dice:.4f} ({time.time() - start:.0f}s)", flush=True)

    net.eval()
    for folder in ("eval", "calib", "masks"):
        os.makedirs(os.path.join(HERE, folder), exist_ok=True)
    for i, (img, mask) in enumerate(zip(eval_x, eval_y)):
        Image.fromarray(img, "RGB").save(os.path.join(HERE, "eval", f"{i:03d}.png"), optimize=True)
        Image.fromarray(mask, "L").save(os.path.join(HERE, "masks", f"{i:03d}.png"), optimize=True)
    for i, img in enumerate(calib_x):
        Image.fromarray(img, "RGB").save(os.path.join(HERE, "calib", f"{i:03d}.png"), optimize=True)
    with open(os.path.join(HERE, "eval", "labels.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "mask"])
        for i in range(len(eval_x)):
            w.writerow([f"{i:03d}.png", f"../masks/{i:03d}.png"])

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
    onnx.checker.check_model(onnx.load(path))
    with torch.no_grad():
        logits = net(xe).numpy()
    iou, dice = iou_dice(logits.argmax(1), eval_y)
    stats = {
        "params": params,
        "steps": steps,
        "classes": CLASSES,
        "train_seconds": round(time.time() - start),
        "eval_iou_pooled_mean_foreground": round(iou, 5),
        "eval_dice_pooled_mean_foreground": round(dice, 5),
        "reference_logits_sample0_pixel0": logits[0, :, 0, 0].round(4).tolist(),
        "history": history,
    }
    with open(os.path.join(HERE, "train_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if k != "history"}), file=sys.stderr)


if __name__ == "__main__":
    main()
