#!/usr/bin/env python3
"""Train QuantGate's bundled example model: a tiny GPT on the King James Bible.

Pipeline (all in this one file, no third-party packages beyond torch and onnx):

  1. Text: dump the KJV (public domain) with the `bible` CLI from Debian's `bible-kjv`
     package (or read a dump given with --kjv-file), one verse per line, references stripped.
  2. Split by book: Ruth -> calib.txt, Jonah + Ephesians -> eval.txt, every other book -> training.
     The three sets share no verse.
  3. Tokenizer: byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer regex and byte-to-unicode
     alphabet) with 256 byte tokens + learned merges + one special token <|endoftext|>, trained
     on the training books only by the small trainer below, written as a Hugging Face
     tokenizer.json.
  4. Model: decoder-only transformer (learned token + position embeddings, pre-LN blocks, causal
     self-attention, GELU MLP 4x, untied LM head), trained with AdamW under a wall-clock budget.
  5. Export: torch.onnx.export, opset 17, input `input_ids` int64 [batch, seq], output `logits`
     float32 [batch, seq, vocab]; every nn.Linear becomes MatMul(x, W^T) whose B input is an
     initializer of shape [in, out], renamed after the torch parameter (e.g. `h.0.attn.c_attn.weight_t`).
     Checked with onnx.checker; reference logits are written for check_onnx.mjs.

Run from the repository root with Debian's python (torch 1.13, onnx):

    /usr/bin/python3 examples/tiny-lm/train.py --time-budget 660

Perplexity protocol (the same one check_onnx.mjs reproduces with onnxruntime-node): tokenize the
whole eval text without special tokens, cut the ids into consecutive non-overlapping windows of
at most 128 tokens, predict tokens 1..n-1 of each window from their prefix inside the window, and
report exp(mean negative log-likelihood) over all predicted tokens.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter


def _pre_parse_threads(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "2"


# Debian's torch does its matrix products in the system BLAS (OpenBLAS, pthreads), whose thread
# pool must be sized before torch is imported. On a 2-core box, 2 BLAS threads with torch's own
# (OpenMP) intra-op pool at 1 thread measured ~2.5x faster than torch.set_num_threads(2), which
# oversubscribes the cores (OpenMP threads x BLAS threads).
os.environ["OPENBLAS_NUM_THREADS"] = _pre_parse_threads(sys.argv)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

CALIB_BOOKS = ["Ruth"]
EVAL_BOOKS = ["Jonah", "Eph"]
EOT = "<|endoftext|>"

# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

REF_RE = re.compile(r"^(?P<book>[1-3]?[A-Za-z]+)(?P<chap>\d+):(?P<verse>\d+) (?P<text>.*)$")


def load_kjv(kjv_file: str | None) -> list[tuple[str, list[str]]]:
    """Returns [(book, [verse text, ...]), ...] in canonical order."""
    if kjv_file:
        with open(kjv_file, encoding="ascii") as f:
            raw = f.read()
    else:
        # -f turns pretty-printing off: one "Book C:V text" line per verse.
        raw = subprocess.run(
            ["bible", "-f", "Gen1:1-Rev22:21"],
            check=True, stdin=subprocess.DEVNULL, capture_output=True,
        ).stdout.decode("ascii")
    books: list[tuple[str, list[str]]] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = REF_RE.match(line)
        if not m:
            raise ValueError(f"unexpected line in KJV dump: {line!r}")
        text = " ".join(m.group("text").split())
        if not books or books[-1][0] != m.group("book"):
            books.append((m.group("book"), []))
        books[-1][1].append(text)
    if len(books) != 66 or sum(len(v) for _, v in books) != 31102:
        raise ValueError(f"expected 66 books / 31102 verses, got {len(books)} books")
    return books


def book_text(verses: list[str]) -> str:
    return "\n".join(verses) + "\n"


# --------------------------------------------------------------------------------------------
# Byte-level BPE tokenizer (GPT-2 / Hugging Face `ByteLevel` conventions)
# --------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(
        range(ord("\xae"), ord("\xff") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}

# The ByteLevel pre-tokenizer regex
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# written for ASCII input (the KJV dump is pure ASCII; encode() asserts it), where
# \p{L} = [A-Za-z] and \p{N} = [0-9].
PRETOKEN_RE = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
)


def pretokenize(text: str) -> list[str]:
    if not text.isascii():
        raise ValueError("this tokenizer trainer only handles ASCII text")
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("ascii")) for piece in PRETOKEN_RE.findall(text)]


def train_bpe(text: str, num_merges: int) -> list[tuple[str, str]]:
    """Classic BPE over pre-token counts; ties broken by the lexicographically smallest pair."""
    counts = Counter(pretokenize(text))
    words = [(list(w), c) for w, c in counts.items()]
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best_count = max(pairs.values())
        best = min(p for p, c in pairs.items() if c == best_count)
        merges.append(best)
        a, b = best
        for syms, _c in words:
            i = 0
            while i < len(syms) - 1:
                if syms[i] == a and syms[i + 1] == b:
                    syms[i : i + 2] = [a + b]
                i += 1
    return merges


class BPETokenizer:
    def __init__(self, merges: list[tuple[str, str]]):
        self.merges = merges
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.vocab: dict[str, int] = {BYTE_ENCODER[b]: b for b in range(256)}
        for a, b in merges:
            self.vocab[a + b] = len(self.vocab)
        self.eot_id = len(self.vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 1  # + <|endoftext|>

    def bpe(self, word: str) -> list[int]:
        hit = self.cache.get(word)
        if hit is not None:
            return hit
        syms = list(word)
        while len(syms) > 1:
            # lowest-rank adjacent pair, leftmost on ties (what tokenizers / tokenizers.js do)
            best_i, best_r = -1, None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best_r is None or r < best_r):
                    best_i, best_r = i, r
            if best_i < 0:
                break
            syms[best_i : best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        ids = [self.vocab[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for w in pretokenize(text):
            out.extend(self.bpe(w))
        return out

    def decode(self, ids: list[int]) -> str:
        parts = []
        for i in ids:
            if i == self.eot_id:
                parts.append(EOT)
            else:
                parts.append(bytes(BYTE_DECODER[c] for c in self.id_to_token[i]).decode("utf-8", "replace"))
        return "".join(parts)

    def to_hf_json(self) -> dict:
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {
                    "id": self.eot_id,
                    "content": EOT,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                }
            ],
            "normalizer": None,
            "pre_tokenizer": {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": True,
            },
            "post_processor": None,
            "decoder": {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": True,
            },
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "merges": [[a, b] for a, b in self.merges],
            },
        }


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, ctx: int):
        super().__init__()
        self.n_head = n_head
        self.scale = 1.0 / math.sqrt(d_model // n_head)
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.register_buffer("mask", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * self.scale
        att = att.masked_fill(~self.mask[:T, :T], -1e9)
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, ctx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, ctx)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, ctx: int, d_model: int, n_layer: int, n_head: int):
        super().__init__()
        self.ctx = ctx
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(ctx, d_model)
        self.h = nn.ModuleList([Block(d_model, n_head, ctx) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2 residual scaling
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.wte(input_ids) + self.wpe.weight[:T]
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# --------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------


def windows(ids: list[int], ctx: int) -> list[list[int]]:
    return [ids[i : i + ctx] for i in range(0, len(ids), ctx) if len(ids[i : i + ctx]) >= 2]


@torch.no_grad()
def mean_nll(model: TinyGPT, ids: list[int], ctx: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for w in windows(ids, ctx):
        x = torch.tensor([w], dtype=torch.long)
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits[0], x[0, 1:], reduction="sum")
        total += loss.item()
        count += len(w) - 1
    model.train()
    return total / count


def unigram_nll(train_ids: list[int], ids: list[int], vocab: int, ctx: int) -> float:
    """Add-one smoothed unigram model from the training tokens, on the same predicted positions."""
    counts = Counter(train_ids)
    denom = len(train_ids) + vocab
    total, count = 0.0, 0
    for w in windows(ids, ctx):
        for t in w[1:]:
            total -= math.log((counts.get(t, 0) + 1) / denom)
            count += 1
    return total / count


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export_onnx(model: TinyGPT, path: str, opset: int) -> list[tuple[str, list[int]]]:
    import onnx
    from onnx import numpy_helper

    model.eval()
    dummy = torch.randint(0, model.wte.num_embeddings, (2, 16), dtype=torch.long)
    torch.onnx.export(
        model,
        (dummy,),
        path,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        opset_version=opset,
        do_constant_folding=True,
    )

    m = onnx.load(path)
    g = m.graph
    # Give the folded (transposed) Linear weights stable, readable names: "<param>_t" ([in, out]).
    linear_w = {
        name: p.detach().t().contiguous().numpy()
        for name, p in model.named_parameters()
        if name.endswith(".weight") and p.dim() == 2 and not name.startswith(("wte", "wpe"))
    }
    init_by_name = {t.name: t for t in g.initializer}
    rename: dict[str, str] = {}
    for node in g.node:
        if node.op_type == "MatMul" and node.input[1] in init_by_name:
            arr = numpy_helper.to_array(init_by_name[node.input[1]])
            match = [n for n, w in linear_w.items() if w.shape == arr.shape and (w == arr).all()]
            if len(match) != 1:
                raise RuntimeError(f"cannot map MatMul weight {node.input[1]} to a Linear ({match})")
            rename[node.input[1]] = match[0] + "_t"
    if len(rename) != len(linear_w):
        raise RuntimeError(f"found {len(rename)} MatMul weights for {len(linear_w)} Linear layers")
    for t in g.initializer:
        if t.name in rename:
            t.name = rename[t.name]
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    m.producer_name = "quantgate-tiny-lm"
    m.doc_string = "Tiny GPT trained on the King James Bible (public domain); see examples/tiny-lm/README.md"
    onnx.save(m, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return [(rename[k], list(linear_w[rename[k][:-2]].shape)) for k in rename]


def f32_b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()).decode()


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=HERE, help="where the artifacts go (default: this folder)")
    ap.add_argument("--kjv-file", default=None, help="a `bible -f Gen1:1-Rev22:21` dump (default: run `bible`)")
    ap.add_argument("--time-budget", type=float, default=660.0, help="training wall-clock seconds (default 660)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time budget only)")
    ap.add_argument("--merges", type=int, default=255, help="BPE merges (vocab = 256 + merges + 1 special)")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=float, default=60.0, help="seconds between validation passes")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads (OPENBLAS_NUM_THREADS, default 2)")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads (default 1, see top)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--checkpoint", default="/tmp/quantgate-tiny-lm.pt", help="torch state dict (not committed)")
    ap.add_argument("--export-only", action="store_true", help="skip training, export --checkpoint")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    os.makedirs(args.out_dir, exist_ok=True)
    out = lambda name: os.path.join(args.out_dir, name)  # noqa: E731

    # ---- text and splits
    books = load_kjv(args.kjv_file)
    names = [b for b, _ in books]
    for b in CALIB_BOOKS + EVAL_BOOKS:
        if b not in names:
            raise ValueError(f"book {b} not found")
    calib_text = "".join(book_text(v) for b, v in books if b in CALIB_BOOKS)
    eval_text = "".join(book_text(v) for b, v in books if b in EVAL_BOOKS)
    train_books = [(b, book_text(v)) for b, v in books if b not in CALIB_BOOKS + EVAL_BOOKS]
    train_text = "".join(t for _, t in train_books)
    held = set(calib_text.splitlines()) | set(eval_text.splitlines())
    overlap_cal_eval = set(calib_text.splitlines()) & set(eval_text.splitlines())
    overlap_train = held & set(train_text.splitlines())
    print(f"text: train {len(train_text)} B ({len(train_books)} books), calib {len(calib_text)} B {CALIB_BOOKS}, "
          f"eval {len(eval_text)} B {EVAL_BOOKS}; identical verse lines shared: calib/eval {len(overlap_cal_eval)}, "
          f"held-out/train {len(overlap_train)}", flush=True)
    for name, text in (("calib.txt", calib_text), ("eval.txt", eval_text)):
        with open(out(name), "w", encoding="ascii", newline="\n") as f:
            f.write(text)

    # ---- tokenizer
    t0 = time.time()
    merges = train_bpe(train_text, args.merges)
    tok = BPETokenizer(merges)
    vocab = tok.vocab_size
    with open(out("tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok.to_hf_json(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(out("tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({
            "tokenizer_class": "GPT2Tokenizer",
            "bos_token": EOT,
            "eos_token": EOT,
            "unk_token": None,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": args.ctx,
        }, f, indent=1)
        f.write("\n")
    train_ids: list[int] = []
    for _, t in train_books:  # documents (books) are separated by <|endoftext|>
        train_ids.extend(tok.encode(t))
        train_ids.append(tok.eot_id)
    calib_ids = tok.encode(calib_text)
    eval_ids = tok.encode(eval_text)
    assert tok.decode(eval_ids) == eval_text and tok.decode(calib_ids) == calib_text
    print(f"tokenizer: {len(merges)} merges, vocab {vocab}, {time.time() - t0:.1f}s; tokens: train {len(train_ids)}, "
          f"calib {len(calib_ids)}, eval {len(eval_ids)} ({len(eval_text) / len(eval_ids):.2f} bytes/token)", flush=True)
    with open(out("eval_ids.json"), "w") as f:  # for check_tokenizer.mjs
        json.dump({"eval": eval_ids, "calib": calib_ids}, f, separators=(",", ":"))
        f.write("\n")

    # ---- model
    model = TinyGPT(vocab, args.ctx, args.d_model, args.n_layer, args.n_head)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters ({n_params / 1e6:.3f} M), d_model {args.d_model}, layers {args.n_layer}, "
          f"heads {args.n_head}, ctx {args.ctx}", flush=True)
    uni = unigram_nll(train_ids, eval_ids, vocab, args.ctx)
    print(f"baselines on eval: uniform ppl {vocab}, add-one unigram ppl {math.exp(uni):.2f} (nll {uni:.4f})", flush=True)

    stats: dict = {}
    if args.export_only:
        model.load_state_dict(torch.load(args.checkpoint))
        stats = json.load(open(out("train_stats.json")))
    else:
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr, betas=(0.9, 0.95),
        )
        data = torch.tensor(train_ids, dtype=torch.long)
        gen = torch.Generator().manual_seed(args.seed)
        step, start, last_eval = 0, time.time(), -1e9
        ema = None
        history = []
        while True:
            elapsed = time.time() - start
            progress = elapsed / args.time_budget
            if args.max_steps:
                progress = max(progress, step / args.max_steps)
            if progress >= 1.0:
                break
            if step < args.warmup:
                lr = args.lr * (step + 1) / args.warmup
            else:
                lr = args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            ix = torch.randint(0, len(data) - args.ctx - 1, (args.batch,), generator=gen)
            xb = torch.stack([data[i : i + args.ctx] for i in ix])
            yb = torch.stack([data[i + 1 : i + 1 + args.ctx] for i in ix])
            logits = model(xb)
            loss = F.cross_entropy(logits.reshape(-1, vocab), yb.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            if time.time() - last_eval >= args.eval_every:
                last_eval = time.time()
                v = mean_nll(model, eval_ids, args.ctx)
                history.append({"step": step, "time_s": round(time.time() - start, 1), "train_loss": round(ema, 4),
                                "val_loss": round(v, 4)})
                print(f"step {step:5d}  {time.time() - start:6.0f}s  lr {lr:.2e}  train loss (ema) {ema:.4f}  "
                      f"val loss {v:.4f}  val ppl {math.exp(v):.2f}", flush=True)
        train_time = time.time() - start
        torch.save(model.state_dict(), args.checkpoint)
        # full-pass numbers on a fixed sample of training text, with the same windowing as val
        train_sample = train_ids[: len(eval_ids) * 4]
        tr = mean_nll(model, train_sample, args.ctx)
        v = mean_nll(model, eval_ids, args.ctx)
        c = mean_nll(model, calib_ids, args.ctx)
        stats = {
            "parameters": n_params,
            "vocab_size": vocab,
            "steps": step,
            "batch": args.batch,
            "ctx": args.ctx,
            "tokens_seen": step * args.batch * args.ctx,
            "train_tokens": len(train_ids),
            "train_time_s": round(train_time, 1),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "torch_threads": args.torch_threads,
            "seed": args.seed,
            "train_loss": round(tr, 4),
            "train_ppl": round(math.exp(tr), 3),
            "val_loss": round(v, 4),
            "val_ppl": round(math.exp(v), 3),
            "val_loss_exact": v,
            "calib_loss": round(c, 4),
            "calib_ppl": round(math.exp(c), 3),
            "unigram_val_ppl": round(math.exp(uni), 3),
            "uniform_val_ppl": vocab,
            "history": history,
            "torch": torch.__version__,
        }
        with open(out("train_stats.json"), "w") as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
        print(f"done: {step} steps in {train_time:.0f}s; train loss {tr:.4f} (ppl {math.exp(tr):.2f}), "
              f"val loss {v:.4f} (ppl {math.exp(v):.2f}), calib loss {c:.4f} (ppl {math.exp(c):.2f}); "
              f"unigram val ppl {math.exp(uni):.2f}", flush=True)

    # ---- export
    model.eval()
    onnx_path = out("model.onnx")
    weights = export_onnx(model, onnx_path, args.opset)
    size = os.path.getsize(onnx_path)
    print(f"exported {onnx_path}: {size} bytes, opset {args.opset}; MatMul weight initializers:", flush=True)
    for name, shape in weights:
        print(f"  {name} {shape}")

    # reference logits for check_onnx.mjs: a [2, 8] batch and a [1, ctx] full-context window
    with torch.no_grad():
        a = torch.tensor([eval_ids[0:8], calib_ids[0:8]], dtype=torch.long)
        b = torch.tensor([eval_ids[: args.ctx]], dtype=torch.long)
        la = model(a)
        lb = model(b)
        picks = [0, args.ctx // 2 - 1, args.ctx - 1]
    ref = {
        "comment": "torch reference logits (float32 little-endian, base64) for check_onnx.mjs",
        "cases": [
            {"input_ids": a.tolist(), "positions": None, "shape": list(la.shape), "logits_f32_b64": f32_b64(la)},
            {"input_ids": b.tolist(), "positions": picks, "shape": [1, len(picks), vocab],
             "logits_f32_b64": f32_b64(lb[:, picks, :])},
        ],
        "val_loss": stats.get("val_loss_exact"),
        "ctx": args.ctx,
    }
    with open(out("reference_logits.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("wrote reference_logits.json", flush=True)


if __name__ == "__main__":
    main()
