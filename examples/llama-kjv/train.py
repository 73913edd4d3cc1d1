#!/usr/bin/env python3
"""Train QuantGate's Llama-architecture example on the King James Bible (public domain).

Same text, split and tokenizer as examples/tiny-lm (its tokenizer.json is reused unchanged: byte-level
BPE, 512 tokens), a Llama-style decoder instead of GPT-2:

  * RMSNorm (pre-norm) and a final RMSNorm, no biases anywhere
  * rotary position embeddings (theta 10000, the "rotate half" convention of Hugging Face Llama)
  * grouped-query attention: 6 query heads share 2 key/value heads, head size 64
  * SwiGLU MLP: down(silu(gate(x)) * up(x))
  * tied input/output embeddings: the LM head is the token embedding matrix, transposed

Parameter names follow Hugging Face's LlamaForCausalLM (model.layers.0.self_attn.q_proj.weight, ...)
so export.py can name initializers the way Optimum does.

Run from the repository root with Debian's python (torch 1.13):

    nice -n 10 /usr/bin/python3 examples/llama-kjv/train.py --time-budget 3600

It checkpoints to --checkpoint every --checkpoint-every seconds (model, optimizer, step, elapsed time),
so a run can be stopped at any time and resumed with --resume; the learning-rate schedule follows the
wall-clock budget. Perplexity protocol: the tiny LM's (non-overlapping windows of 128 tokens, predict
tokens 1..n-1 of each window), so the two models' numbers compare per token on the same eval.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time


def _pre_parse_threads(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# The BLAS pool must be sized before torch loads (see examples/tiny-lm/README.md, "Threads").
os.environ["OPENBLAS_NUM_THREADS"] = _pre_parse_threads(sys.argv)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tiny-lm")


def load_tiny_module():
    """examples/tiny-lm/train.py: the KJV loader, book split and BPE tokenizer (reused, not copied)."""
    saved = os.environ["OPENBLAS_NUM_THREADS"]
    spec = importlib.util.spec_from_file_location("tiny_lm_train", os.path.join(TINY, "train.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    os.environ["OPENBLAS_NUM_THREADS"] = saved
    return mod


def load_tokenizer(tiny):
    with open(os.path.join(TINY, "tokenizer.json"), encoding="utf-8") as f:
        merges = [tuple(m) for m in json.load(f)["model"]["merges"]]
    return tiny.BPETokenizer(merges)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cache(ctx: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [ctx, head_dim/2] (the GroupQueryAttention contrib op takes the same halves)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(ctx, dtype=torch.float32), inv)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd]; cos/sin [T, hd/2]; rotate-half (non-interleaved) convention."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, d: int, n_head: int, n_kv: int, head_dim: int):
        super().__init__()
        self.n_head, self.n_kv, self.hd = n_head, n_kv, head_dim
        self.q_proj = nn.Linear(d, n_head * head_dim, bias=False)
        self.k_proj = nn.Linear(d, n_kv * head_dim, bias=False)
        self.v_proj = nn.Linear(d, n_kv * head_dim, bias=False)
        self.o_proj = nn.Linear(n_head * head_dim, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.n_head // self.n_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, d, n_head, n_kv, head_dim, hidden, eps):
        super().__init__()
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(d, n_head, n_kv, head_dim)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.mlp = MLP(d, hidden)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(
            [
                Layer(cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"],
                      cfg["intermediate_size"], cfg["rms_norm_eps"])
                for _ in range(cfg["num_hidden_layers"])
            ]
        )
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaKJV(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        cos, sin = rope_cache(cfg["max_position_embeddings"], cfg["head_dim"], cfg["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        n = cfg["max_position_embeddings"]
        self.register_buffer("causal", torch.tril(torch.ones(n, n, dtype=torch.bool)), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02
                if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    std = 0.02 / math.sqrt(2 * cfg["num_hidden_layers"])
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        mask = self.causal[:T, :T]
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t()  # tied LM head


def default_config(vocab: int, ctx: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": 384,
        "intermediate_size": 1152,
        "num_hidden_layers": 6,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": ctx,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": vocab - 1,
        "eos_token_id": vocab - 1,
    }


@torch.no_grad()
def mean_nll(model: nn.Module, ids: list[int], ctx: int) -> float:
    """The tiny LM's protocol: consecutive windows of <= ctx tokens, predict tokens 1..n-1 of each."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(ids), ctx):
        w = ids[s : s + ctx]
        if len(w) < 2:
            continue
        x = torch.tensor([w], dtype=torch.long)
        logits = model(x)[0, :-1]
        total += F.cross_entropy(logits, x[0, 1:], reduction="sum").item()
        count += len(w) - 1
    model.train(was)
    return total / count


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--kjv-file", default=None, help="a `bible -f Gen1:1-Rev22:21` dump (default: run `bible`)")
    ap.add_argument("--time-budget", type=float, default=3600.0, help="training wall-clock seconds")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time budget only)")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=float, default=300.0, help="seconds between validation passes")
    ap.add_argument("--checkpoint-every", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (OPENBLAS_NUM_THREADS)")
    ap.add_argument("--checkpoint", default="/tmp/quantgate-llama-kjv.pt")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    tiny = load_tiny_module()
    tok = load_tokenizer(tiny)
    books = tiny.load_kjv(args.kjv_file)
    held = tiny.CALIB_BOOKS + tiny.EVAL_BOOKS
    eval_text = "".join(tiny.book_text(v) for b, v in books if b in tiny.EVAL_BOOKS)
    calib_text = "".join(tiny.book_text(v) for b, v in books if b in tiny.CALIB_BOOKS)
    with open(os.path.join(TINY, "eval.txt"), encoding="ascii") as f:
        if f.read() != eval_text:
            raise RuntimeError("the KJV dump does not reproduce examples/tiny-lm/eval.txt")
    train_ids: list[int] = []
    for b, v in books:
        if b not in held:
            train_ids.extend(tok.encode(tiny.book_text(v)))
            train_ids.append(tok.eot_id)
    eval_ids = tok.encode(eval_text)
    calib_ids = tok.encode(calib_text)
    with open(os.path.join(TINY, "eval_ids.json")) as f:
        ref_ids = json.load(f)
    if ref_ids["eval"] != eval_ids or ref_ids["calib"] != calib_ids:
        raise RuntimeError("tokenizer does not reproduce examples/tiny-lm/eval_ids.json")
    cfg = default_config(tok.vocab_size, args.ctx)
    model = LlamaKJV(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tokens: train {len(train_ids)}, eval {len(eval_ids)}, calib {len(calib_ids)}; "
          f"model {n_params} parameters ({n_params / 1e6:.2f} M)", flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(args.seed)
    step, elapsed0, history = 0, 0.0, []
    if args.resume:
        ck = torch.load(args.checkpoint)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        step, elapsed0, history = ck["step"], ck["elapsed_s"], ck["history"]
        print(f"resumed at step {step}, {elapsed0:.0f}s", flush=True)

    def save(final: bool) -> None:
        ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
              "step": step, "elapsed_s": elapsed, "history": history, "config": cfg, "final": final}
        torch.save(ck, args.checkpoint + ".tmp")
        os.replace(args.checkpoint + ".tmp", args.checkpoint)

    data = torch.tensor(train_ids, dtype=torch.long)
    start = time.time() - elapsed0
    last_eval = last_ck = time.time()
    ema = None
    elapsed = elapsed0
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
            lr = args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        ix = torch.randint(0, len(data) - args.ctx - 1, (args.batch,), generator=gen)
        xb = torch.stack([data[i : i + args.ctx] for i in ix])
        yb = torch.stack([data[i + 1 : i + 1 + args.ctx] for i in ix])
        loss = F.cross_entropy(model(xb).reshape(-1, cfg["vocab_size"]), yb.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            print(f"step {step:5d}  {elapsed:6.0f}s  lr {lr:.2e}  loss(ema) {ema:.4f}  "
                  f"{step * args.batch * args.ctx / max(elapsed, 1e-9):.0f} tok/s", flush=True)
        if time.time() - last_eval >= args.eval_every:
            last_eval = time.time()
            v = mean_nll(model, eval_ids, args.ctx)
            history.append({"step": step, "time_s": round(elapsed, 1), "train_loss": round(ema, 4),
                            "val_loss": round(v, 4)})
            print(f"EVAL step {step} {elapsed:.0f}s val loss {v:.4f} ppl {math.exp(v):.3f}", flush=True)
        if time.time() - last_ck >= args.checkpoint_every:
            last_ck = time.time()
            save(False)
    save(True)
    v = mean_nll(model, eval_ids, args.ctx)
    c = mean_nll(model, calib_ids, args.ctx)
    tr = mean_nll(model, train_ids[: len(eval_ids) * 4], args.ctx)
    stats = {
        "parameters": n_params,
        "config": cfg,
        "steps": step,
        "batch": args.batch,
        "ctx": args.ctx,
        "tokens_seen": step * args.batch * args.ctx,
        "train_tokens": len(train_ids),
        "train_time_s": round(elapsed, 1),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "torch_threads": 1,
        "seed": args.seed,
        "lr": args.lr,
        "train_loss": round(tr, 4),
        "val_loss": round(v, 4),
        "val_ppl": round(math.exp(v), 3),
        "val_loss_exact": v,
        "calib_loss": round(c, 4),
        "calib_ppl": round(math.exp(c), 3),
        "tiny_lm_val_ppl": 12.811,
        "history": history,
        "torch": torch.__version__,
    }
    with open(os.path.join(args.out_dir, "train_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
        f.write("\n")
    print(f"done: {step} steps, {elapsed:.0f}s; val loss {v:.4f} (ppl {math.exp(v):.3f}), "
          f"calib ppl {math.exp(c):.3f}, train-sample loss {tr:.4f}", flush=True)


if __name__ == "__main__":
    main()
