#!/usr/bin/env python3
"""Train QuantGate's recurrent example: a byte-level GRU language model on the King James Bible.

  1. Text: the KJV (public domain) from Debian's `bible-kjv` (`bible -f`), one verse per line,
     references stripped. Training: every book except Ruth, Jonah and Ephesians; evaluation and
     calibration bytes come from tiny-lm's held-out eval.txt (Jonah, Ephesians) and calib.txt
     (Ruth), written as int64 .npy arrays of byte values (eval_ids.npy, calib_ids.npy).
  2. Model: Embedding(256, 32) -> GRU cell (hidden 96, written out with Linear layers so the export
     is MatMul/Gemm) -> Linear(96, 256) logits.
  3. Export: one call processes a chunk of 16 bytes: inputs `ids` int64 [1, 16] and `state` float32
     [1, 96], outputs `logits` float32 [1, 16, 256] and `state_out` [1, 96]. The 16 steps are
     unrolled, so the recurrent weight feeds 16 MatMuls. Then every float initializer is stored as
     float16 and reaches its consumers through a Cast to float32 (as fp16 exports do).
     A caller streams a long text chunk by chunk, feeding `state_out` back as `state`.

Run from the repository root with Debian's python (torch 1.13, onnx):

    /usr/bin/python3 examples/recurrent/train.py --time-budget 240
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tiny-lm")
CHUNK = 16
HIDDEN = 96
EMBED = 32
REF_RE = re.compile(r"^(?P<book>(?:[1-3] ?)?[A-Za-z]+) ?\d+:\d+ (?P<text>.*)$")
HELD_OUT = {"Ruth", "Jonah", "Eph", "Ephesians"}


def training_text() -> bytes:
    raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, stdin=subprocess.DEVNULL, capture_output=True).stdout.decode("ascii")
    lines = []
    for line in raw.splitlines():
        m = REF_RE.match(line)
        if not m or m.group("book").strip() in HELD_OUT:
            continue
        lines.append(" ".join(m.group("text").split()))
    return ("\n".join(lines) + "\n").encode("ascii")


class GruLm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(256, EMBED)
        self.w_ih = torch.nn.Linear(EMBED, 3 * HIDDEN)
        self.w_hh = torch.nn.Linear(HIDDEN, 3 * HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, 256)

    def forward(self, ids: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gx = self.w_ih(self.embed(ids))  # [B, T, 3H]
        h = state
        outs = []
        for t in range(ids.shape[1]):
            gh = self.w_hh(h)
            xr, xz, xn = gx[:, t].chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            outs.append(h)
        return self.head(torch.stack(outs, dim=1)), h


def fp16_behind_cast(model: onnx.ModelProto) -> None:
    graph = model.graph
    casts = []
    for t in graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(t).astype(np.float16)
        half_name = t.name + "_fp16"
        casts.append(helper.make_node("Cast", [half_name], [t.name], name=f"Cast_{t.name}", to=TensorProto.FLOAT))
        t.CopyFrom(numpy_helper.from_array(arr, half_name))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-budget", type=float, default=240)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = torch.tensor(list(training_text()), dtype=torch.long)
    eval_ids = np.frombuffer(open(os.path.join(TINY, "eval.txt"), "rb").read()[:1024], dtype=np.uint8).astype(np.int64)
    calib_ids = np.frombuffer(open(os.path.join(TINY, "calib.txt"), "rb").read()[:512], dtype=np.uint8).astype(np.int64)
    np.save(os.path.join(HERE, "eval_ids.npy"), eval_ids)
    np.save(os.path.join(HERE, "calib_ids.npy"), calib_ids)
    net = GruLm()
    opt = torch.optim.AdamW(net.parameters(), lr=4e-3, weight_decay=1e-5)
    seq, batch = 64, 64
    start = time.time()
    step = 0
    while time.time() - start < args.time_budget:
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s : s + seq] for s in starts])
        y = torch.stack([data[s + 1 : s + seq + 1] for s in starts])
        logits, _ = net(x, torch.zeros(batch, HIDDEN))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} ({time.time() - start:.0f}s)", flush=True)
    net.eval()
    with torch.no_grad():
        ids = torch.from_numpy(eval_ids).unsqueeze(0)
        logits, _ = net(ids, torch.zeros(1, HIDDEN))
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item()
    path = os.path.join(HERE, "model.onnx")
    torch.onnx.export(
        net,
        (torch.zeros(1, CHUNK, dtype=torch.long), torch.zeros(1, HIDDEN)),
        path,
        input_names=["ids", "state"],
        output_names=["logits", "state_out"],
        opset_version=14,
    )
    model = onnx.load(path)
    fp16_behind_cast(model)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    stats = {"steps": step, "train_loss": loss.item(), "eval_bits_per_byte": nll / np.log(2), "params": sum(p.numel() for p in net.parameters())}
    with open(os.path.join(HERE, "train_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
