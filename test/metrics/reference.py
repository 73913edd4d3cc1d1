#!/usr/bin/env python3
"""Independent reference values for src/metrics (written to reference.json beside this script).

A second implementation in Python/numpy, written apart from the TypeScript: a full edit-distance table
(not one rolling row), itertools.groupby for the CTC collapse, numpy boolean masks for IoU/Dice, a numpy
similarity matrix with a stable argsort for nearest neighbours. Inputs are drawn from fixed seeds and stored
in the JSON with the outputs, so the test needs neither Python nor numpy.

    /usr/bin/python3 test/metrics/reference.py && npx prettier --write test/metrics/reference.json
"""

from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def edit_distance(a: list, b: list) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (0 if a[i - 1] == b[j - 1] else 1))
    return table[len(a)][len(b)]


def text_case(rng: np.random.Generator) -> dict:
    alphabet = list("abcde ") + ["é", "𝔸"]  # a non-BMP code point counts as one character
    def line() -> str:
        return "".join(rng.choice(alphabet) for _ in range(int(rng.integers(0, 14))))
    refs = [line() for _ in range(12)]
    hyps = []
    for r in refs:
        chars = list(r)
        for _ in range(int(rng.integers(0, 4))):
            op = int(rng.integers(0, 3))
            pos = int(rng.integers(0, len(chars) + 1))
            if op == 0:
                chars.insert(pos, str(rng.choice(alphabet)))
            elif chars and pos < len(chars):
                if op == 1:
                    del chars[pos]
                else:
                    chars[pos] = str(rng.choice(alphabet))
        hyps.append("".join(chars))
    char_edits = [edit_distance(list(r), list(h)) for r, h in zip(refs, hyps)]
    word_edits = [edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)]
    return {
        "references": refs,
        "hypotheses": hyps,
        "char_edits": char_edits,
        "word_edits": word_edits,
        "cer": sum(char_edits) / sum(len(r) for r in refs),
        "wer": sum(word_edits) / sum(len(r.split()) for r in refs),
    }


def ctc_case(rng: np.random.Generator, blank_last: bool) -> dict:
    frames, classes = 30, 6
    logits = rng.normal(0, 1, size=(frames, classes)).astype(np.float32)
    # Long runs so that repeats and blanks between equal symbols both occur.
    path = np.repeat(rng.integers(0, classes, size=frames // 3), 3)
    logits[np.arange(frames), path] += 2.5
    blank = classes - 1 if blank_last else 0
    best = logits.argmax(-1)
    collapsed = [int(k) for k, _ in itertools.groupby(best.tolist()) if k != blank]
    symbols = ["x", "y", "z", " ", "ü"]
    text = "".join(symbols[k if blank_last else k - 1] for k in collapsed)
    return {"frames": frames, "classes": classes, "blank": blank, "logits": logits.ravel().tolist(), "symbols": symbols,
            "collapsed": collapsed, "text": text}


def iou_dice(pred: np.ndarray, ref: np.ndarray, classes: list[int]) -> tuple[float, float]:
    ious, dices = [], []
    for c in classes:
        p, r = pred == c, ref == c
        union = np.logical_or(p, r).sum()
        if union == 0:
            continue
        inter = np.logical_and(p, r).sum()
        ious.append(inter / union)
        dices.append(2 * inter / (p.sum() + r.sum()))
    if not ious:
        return 1.0, 1.0
    return float(np.mean(ious)), float(np.mean(dices))


def segmentation_case(rng: np.random.Generator) -> dict:
    n, c, h, w = 5, 3, 6, 7
    logits_f = rng.normal(0, 1, size=(n, c, h, w)).astype(np.float32)
    logits_q = (logits_f + rng.normal(0, 0.4, size=logits_f.shape)).astype(np.float32)
    refs = rng.integers(0, c, size=(n, h, w))
    refs[2] = 0  # an image of background only
    argmax_f, argmax_q = logits_f.argmax(1), logits_q.argmax(1)
    pred_f, pred_q = argmax_f.copy(), argmax_q.copy()
    pred_f[2] = 0
    pred_q[2] = 0  # empty union for every foreground class: scores 1 by convention
    fg = [1, 2]
    per_f = [iou_dice(pred_f[i], refs[i], fg) for i in range(n)]
    per_q = [iou_dice(pred_q[i], refs[i], fg) for i in range(n)]
    per_vs = [iou_dice(pred_q[i], pred_f[i], fg) for i in range(n)]
    pooled_f = iou_dice(pred_f, refs, fg)
    pooled_q = iou_dice(pred_q, refs, fg)
    agreement = [float((pred_q[i] == pred_f[i]).mean()) for i in range(n)]
    # Binary: a threshold on logits of one channel (sigmoid(x) > 0.7 <=> x > logit(0.7)).
    bin_logits = rng.normal(0, 2, size=(h, w)).astype(np.float32)
    bin_mask = (1 / (1 + np.exp(-bin_logits.astype(np.float64))) > 0.7).astype(int)
    return {
        "dims": [n, c, h, w],
        "logits_float": logits_f.ravel().tolist(),
        "logits_quantized": logits_q.ravel().tolist(),
        "argmax_float": argmax_f.ravel().tolist(),
        "argmax_quantized": argmax_q.ravel().tolist(),
        "pred_float": pred_f.ravel().tolist(),
        "pred_quantized": pred_q.ravel().tolist(),
        "references": refs.ravel().tolist(),
        "iou_float": [p[0] for p in per_f],
        "dice_float": [p[1] for p in per_f],
        "iou_quantized": [p[0] for p in per_q],
        "dice_quantized": [p[1] for p in per_q],
        "iou_vs_float": [p[0] for p in per_vs],
        "dice_vs_float": [p[1] for p in per_vs],
        "pooled_float": list(pooled_f),
        "pooled_quantized": list(pooled_q),
        "pixel_agreement": agreement,
        "binary_logits": bin_logits.ravel().tolist(),
        "binary_threshold": 0.7,
        "binary_mask": bin_mask.ravel().tolist(),
    }


def decision_case(rng: np.random.Generator) -> dict:
    n = 40
    f = rng.uniform(0, 1, size=n).astype(np.float32)
    q = np.clip(f + rng.normal(0, 0.08, size=n), 0, 1).astype(np.float32)
    labels = (rng.uniform(0, 1, size=n) < f).astype(int)
    t = 0.5
    fd, qd = f > t, q > t
    diff = np.abs(q.astype(np.float64) - f.astype(np.float64))
    return {
        "float": f.tolist(),
        "quantized": q.tolist(),
        "labels": labels.tolist(),
        "threshold": t,
        "agreement": float((fd == qd).mean()),
        "accuracy_float": float((fd == labels.astype(bool)).mean()),
        "accuracy_quantized": float((qd == labels.astype(bool)).mean()),
        "max_abs_change": float(diff.max()),
        "mean_abs_change": float(diff.mean()),
    }


def neighbours(emb: np.ndarray, k: int) -> list[list[int]]:
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    out = []
    for i in range(len(emb)):
        order = [int(j) for j in np.argsort(-sim[i], kind="stable") if j != i]
        out.append(order[:k])
    return out


def retrieval_case(rng: np.random.Generator) -> dict:
    n, d, k = 24, 16, 4
    f = rng.normal(0, 1, size=(n, d)).astype(np.float32)
    q = (f + rng.normal(0, 0.35, size=f.shape)).astype(np.float32)
    nf, nq = neighbours(f.astype(np.float64), k), neighbours(q.astype(np.float64), k)
    recall = [len(set(a) & set(b)) / k for a, b in zip(nf, nq)]
    return {"k": k, "float": f.tolist(), "quantized": q.tolist(), "neighbours_float": nf, "recall": recall, "mean": float(np.mean(recall))}


def main() -> None:
    rng = np.random.default_rng(20261127)
    data = {
        "text": text_case(rng),
        "ctc_blank_first": ctc_case(rng, blank_last=False),
        "ctc_blank_last": ctc_case(rng, blank_last=True),
        "segmentation": segmentation_case(rng),
        "decisions": decision_case(rng),
        "retrieval": retrieval_case(rng),
    }
    assert not math.isnan(data["text"]["cer"])
    with open(os.path.join(HERE, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
