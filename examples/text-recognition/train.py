#!/usr/bin/env python3
"""Train QuantGate's text-recognition example: a small convolutional CTC recognizer on rendered text lines.

  1. Text: lines of one to three lower-case words (a-z) drawn from the King James text that
     examples/tiny-lm ships (public domain), at most 16 characters per line.
  2. Images: each line rendered with Pillow in DejaVu Sans or DejaVu Sans Oblique (Debian's
     fonts-dejavu), 14-18 px, dark ink on a light background with random grey levels, a small
     random offset and pixel noise, on a 32 x 160 greyscale canvas. Training lines are made in
     memory; 64 evaluation and 16 calibration lines are written as eval/NNN.png and calib/NNN.png,
     with labels.csv (file,text) beside the evaluation images.
  3. Preprocessing (the same spec quantgate.yml gives): grey, scale 1/255, mean 0.5, std 0.5, NCHW.
  4. Model (conv-only CRNN, every weight a Conv): four 3x3 convolutions with ReLU and pooling
     take [N, 1, 32, 160] to [N, 64, 4, 40]; a 4x1 convolution folds the height to one row; two
     1-D convolutions (kernel 3, as 1x3 Conv2d) mix neighbouring frames; a 1x1 convolution gives
     28 classes per frame: index 0 is the CTC blank, index i (1..27) is line i of dict.txt.
     Output `logits` is [N, 40, 28] (frames, classes) after a transpose.
  5. Training: CTC loss (blank 0), AdamW, one thread, a fixed budget of steps.
  6. Export: torch.onnx.export opset 13, input `image` [batch, 1, 32, 160], output `logits`.

Run from the repository root with Debian's python (torch 1.13, onnx, Pillow):

    nice -n 10 /usr/bin/python3 examples/text-recognition/train.py
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf"]
# dict.txt order: the PaddleOCR convention, one symbol per line, class = line index + 1 (0 is the blank).
SYMBOLS = list("abcdefghijklmnopqrstuvwxyz") + [" "]
HEIGHT, WIDTH, FRAMES = 32, 160, 40
MAX_CHARS = 16
MEAN, STD = 0.5, 0.5


def words() -> list[str]:
    text = ""
    for name in ("calib.txt", "eval.txt"):
        with open(os.path.join(ROOT, "examples", "tiny-lm", name), encoding="utf-8") as f:
            text += f.read() + "\n"
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) <= MAX_CHARS]


def make_line(vocab: list[str], rng: np.random.Generator) -> str:
    while True:
        count = int(rng.integers(1, 4))
        line = " ".join(vocab[int(rng.integers(0, len(vocab)))] for _ in range(count))
        if len(line) <= MAX_CHARS:
            return line


def render(text: str, rng: np.random.Generator, fonts: dict) -> np.ndarray:
    size = int(rng.integers(14, 19))
    font = fonts[(int(rng.integers(0, len(FONTS))), size)]
    bg = int(rng.integers(170, 256))
    ink = int(rng.integers(0, 90))
    img = Image.new("L", (WIDTH, HEIGHT), bg)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width = right - left
    x = int(rng.integers(1, max(2, WIDTH - width - 1))) - left
    y = (HEIGHT - (bottom - top)) // 2 - top + int(rng.integers(-3, 4))
    draw.text((x, y), text, fill=ink, font=font)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, size=(HEIGHT, WIDTH))
    return np.clip(arr, 0, 255).astype(np.uint8)


def encode(text: str) -> list[int]:
    return [SYMBOLS.index(c) + 1 for c in text]


def preprocess(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    return ((x - MEAN) / STD)[:, None, :, :]


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c = torch.nn.Conv2d
        self.c1 = c(1, 16, 3, padding=1)
        self.c2 = c(16, 32, 3, padding=1)
        self.c3 = c(32, 48, 3, padding=1)
        self.c4 = c(48, 64, 3, padding=1)
        self.fold = c(64, 128, (4, 1))
        self.t1 = c(128, 128, (1, 3), padding=(0, 1))
        self.t2 = c(128, 128, (1, 3), padding=(0, 1))
        self.head = c(128, len(SYMBOLS) + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional
        x = f.max_pool2d(torch.relu(self.c1(x)), 2)  # 16 x 80
        x = f.max_pool2d(torch.relu(self.c2(x)), 2)  # 8 x 40
        x = f.max_pool2d(torch.relu(self.c3(x)), (2, 1))  # 4 x 40
        x = torch.relu(self.c4(x))
        x = torch.relu(self.fold(x))  # 1 x 40
        x = x + torch.relu(self.t1(x))
        x = x + torch.relu(self.t2(x))
        x = self.head(x)  # [N, C, 1, T]
        return x.squeeze(2).transpose(1, 2)  # [N, T, C]


def greedy(logits: np.ndarray) -> list[str]:
    out = []
    for row in logits.argmax(-1):
        prev, chars = -1, []
        for k in row:
            if k != prev and k != 0:
                chars.append(SYMBOLS[k - 1])
            prev = k
        out.append("".join(chars))
    return out


def edits(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    fonts = {(i, s): ImageFont.truetype(p, s) for i, p in enumerate(FONTS) for s in range(14, 19)}
    vocab = words()

    def batch(count: int, r: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        texts = [make_line(vocab, r) for _ in range(count)]
        return np.stack([render(t, r, fonts) for t in texts]), texts

    eval_imgs, eval_texts = batch(64, np.random.default_rng(2))
    calib_imgs, _ = batch(16, np.random.default_rng(3))
    train_imgs, train_texts = batch(12000, rng)
    xt = torch.from_numpy(preprocess(train_imgs))
    targets = [torch.tensor(encode(t)) for t in train_texts]
    xe = torch.from_numpy(preprocess(eval_imgs))

    net = Net()
    params = sum(p.numel() for p in net.parameters())
    print(f"params {params}", flush=True)
    steps = int(os.environ.get("STEPS", "5000"))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    start = time.time()
    history = []
    for step in range(steps):
        idx = torch.randint(0, len(xt), (32,))
        logp = net(xt[idx]).log_softmax(-1).transpose(0, 1)  # [T, N, C]
        tg = [targets[i] for i in idx.tolist()]
        loss = ctc(logp, torch.cat(tg), torch.full((len(tg),), FRAMES, dtype=torch.long), torch.tensor([len(t) for t in tg]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            net.eval()
            with torch.no_grad():
                pred = greedy(net(xe).numpy())
            net.train()
            cer = sum(edits(p, t) for p, t in zip(pred, eval_texts)) / sum(len(t) for t in eval_texts)
            history.append({"step": step, "loss": round(loss.item(), 4), "eval_cer": round(cer, 4)})
            print(f"step {step}: loss {loss.item():.3f} eval CER {cer:.4f} ({time.time() - start:.0f}s)", flush=True)

    net.eval()
    os.makedirs(os.path.join(HERE, "eval"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "calib"), exist_ok=True)
    for i, img in enumerate(eval_imgs):
        Image.fromarray(img, "L").save(os.path.join(HERE, "eval", f"{i:03d}.png"), optimize=True)
    for i, img in enumerate(calib_imgs):
        Image.fromarray(img, "L").save(os.path.join(HERE, "calib", f"{i:03d}.png"), optimize=True)
    with open(os.path.join(HERE, "eval", "labels.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "text"])
        for i, t in enumerate(eval_texts):
            w.writerow([f"{i:03d}.png", t])
    with open(os.path.join(HERE, "dict.txt"), "w", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in SYMBOLS))

    path = os.path.join(HERE, "model.onnx")
    torch.onnx.export(
        net,
        torch.zeros(1, 1, HEIGHT, WIDTH),
        path,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
    )
    onnx.checker.check_model(onnx.load(path))
    with torch.no_grad():
        logits = net(xe).numpy()
    pred = greedy(logits)
    cer = sum(edits(p, t) for p, t in zip(pred, eval_texts)) / sum(len(t) for t in eval_texts)
    wer = sum(edits(p.split(), t.split()) for p, t in zip(pred, eval_texts)) / sum(len(t.split()) for t in eval_texts)
    stats = {
        "params": params,
        "steps": steps,
        "train_seconds": round(time.time() - start),
        "eval_cer": round(cer, 5),
        "eval_wer": round(wer, 5),
        "eval_predictions_first8": pred[:8],
        "eval_texts_first8": eval_texts[:8],
        "reference_logits_sample0_frames0to1": logits[0, :2].round(4).tolist(),
        "history": history,
    }
    with open(os.path.join(HERE, "train_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if k != "history"}), file=sys.stderr)


if __name__ == "__main__":
    main()
