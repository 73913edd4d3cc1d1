#!/usr/bin/env python3
"""Export the Llama-KJV example to ONNX in the two layouts LLMs are shipped in, built with onnx.helper.

Layouts (both: tied embeddings, the LM head reads the embedding matrix through a Transpose node, so the
matrix is stored once):

  optimum  Hugging Face Optimum's decoder-with-past interface, standard ONNX ops only (opset 17):
           inputs  input_ids int64 [batch, seq], attention_mask int64 [batch, past+seq],
                   position_ids int64 [batch, seq], past_key_values.{i}.key/.value [batch, kv_heads, past, head_dim]
                   (past may be 0)
           outputs logits [batch, seq, vocab], present.{i}.key/.value [batch, kv_heads, past+seq, head_dim]
  genai    ONNX Runtime GenAI builder's form: SimplifiedLayerNormalization / com.microsoft
           SkipSimplifiedLayerNormalization, com.microsoft GroupQueryAttention with do_rotary=1 (cos/sin caches
           as initializers, seqlens_k and total_sequence_length computed from attention_mask); inputs
           input_ids, attention_mask, past_key_values.{i}.key/.value (no position_ids), same outputs.

Weights come from the training checkpoint (--checkpoint, needs torch) or from the committed safetensors shards
(--weights, needs only numpy and onnx). With --random CONFIG.json the weights are random (seeded): that is how the
small test fixtures under test/fixtures/llm/ are made.

Outputs in --out-dir (default this folder), each variant selectable with --variants:
  model.onnx                optimum, fp32 weights inline                       (42 MB: generated, not committed)
  model-ext.onnx(.data)     optimum, fp32 weights as external data             (generated, not committed)
  model-fp16.onnx           optimum, every float tensor and input/output fp16
  genai.onnx                genai layout, fp32                                 (generated, not committed)
  genai-fp16.onnx           genai layout, fp16
  weights/*.safetensors     the trained fp32 weights in two shards (written with --write-weights)
  reference_logits.json     torch logits for check_onnx.mjs (when torch is available)

Run from the repository root:
    /usr/bin/python3 examples/llama-kjv/export.py --checkpoint /tmp/quantgate-llama-kjv.pt --write-weights
    python3 examples/llama-kjv/export.py --weights examples/llama-kjv/weights   # rebuild from shards
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
# Positions the rotary tables cover: beyond training's 128 so decode benchmarks can run longer contexts.
EXPORT_MAX_POSITIONS = 2048


# --------------------------------------------------------------------------------------------
# Weights: safetensors shards (format: u64 header length, JSON header, raw little-endian data)
# --------------------------------------------------------------------------------------------


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, arr in tensors.items():
        n = arr.astype("<f4").nbytes
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {meta['dtype']}, expected F32")
        s, e = meta["data_offsets"]
        out[name] = np.frombuffer(data[s:e], dtype="<f4").reshape(meta["shape"]).copy()
    return out


def write_shards(folder: str, weights: dict[str, np.ndarray], cfg: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    names = list(weights)
    half = cfg["num_hidden_layers"] // 2
    first = [n for n in names if n == "model.embed_tokens.weight" or
             (n.startswith("model.layers.") and int(n.split(".")[2]) < half)]
    second = [n for n in names if n not in first]
    shards = [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)]
    index = {"metadata": {"total_size": sum(int(w.nbytes) for w in weights.values())}, "weight_map": {}}
    for fname, keys in shards:
        write_safetensors(os.path.join(folder, fname), {k: weights[k] for k in keys}, {"format": "pt"})
        for k in keys:
            index["weight_map"][k] = fname
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")


def read_shards(folder: str) -> tuple[dict[str, np.ndarray], dict]:
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        index = json.load(f)
    weights: dict[str, np.ndarray] = {}
    for fname in sorted(set(index["weight_map"].values())):
        weights.update(read_safetensors(os.path.join(folder, fname)))
    return weights, cfg


def random_weights(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d, hd = cfg["hidden_size"], cfg["head_dim"]
    H, KV, F = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
    w = {"model.embed_tokens.weight": rng.normal(0, 0.5, (cfg["vocab_size"], d))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        w[p + "self_attn.q_proj.weight"] = rng.normal(0, d ** -0.5, (H * hd, d))
        w[p + "self_attn.k_proj.weight"] = rng.normal(0, d ** -0.5, (KV * hd, d))
        w[p + "self_attn.v_proj.weight"] = rng.normal(0, d ** -0.5, (KV * hd, d))
        w[p + "self_attn.o_proj.weight"] = rng.normal(0, (H * hd) ** -0.5, (d, H * hd))
        w[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        w[p + "mlp.gate_proj.weight"] = rng.normal(0, d ** -0.5, (F, d))
        w[p + "mlp.up_proj.weight"] = rng.normal(0, d ** -0.5, (F, d))
        w[p + "mlp.down_proj.weight"] = rng.normal(0, F ** -0.5, (d, F))
    w["model.norm.weight"] = 1 + rng.normal(0, 0.1, d)
    return {k: v.astype(np.float32) for k, v in w.items()}


def rope_tables(cfg: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    hd = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    freqs = np.outer(np.arange(n, dtype=np.float32), inv).astype(np.float32)
    return np.cos(freqs).astype(np.float32), np.sin(freqs).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Graph building helpers
# --------------------------------------------------------------------------------------------


class G:
    """A tiny graph builder: unique value names, initializers, nodes."""

    def __init__(self, float_type: int):
        self.ft = float_type
        self.np_ft = np.float16 if float_type == TensorProto.FLOAT16 else np.float32
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def init(self, name: str, arr: np.ndarray, cast: bool = True) -> str:
        if cast and arr.dtype in (np.float32, np.float64):
            arr = arr.astype(self.np_ft)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(self, name: str, values, dtype) -> str:
        return self.init(name, np.array(values, dtype=dtype), cast=False)

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, name: str | None = None, domain: str = "",
           outputs: list[str] | None = None, **attrs) -> list[str] | str:
        self.count += 1
        base = name or f"/{op_type}_{self.count}"
        outs = outputs or ([f"{base}/output_0"] if n_out == 1 else [f"{base}/output_{i}" for i in range(n_out)])
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, domain=domain or None, **attrs))
        return outs[0] if n_out == 1 and outputs is None else outs


def io(name: str, elem: int, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def linear_weights(g: G, weights: dict[str, np.ndarray], name: str) -> str:
    """torch Linear weight [out, in] -> MatMul B initializer [in, out], named like the tiny LM's export."""
    return g.init(name + "_t", np.ascontiguousarray(weights[name].T))


def rms_norm_std(g: G, x: str, w: str, eps: float, prefix: str) -> str:
    sq = g.op("Mul", [x, x], name=f"{prefix}/Mul_sq")
    ms = g.op("ReduceMean", [sq], name=f"{prefix}/ReduceMean", axes=[-1], keepdims=1)
    ep = g.op("Add", [ms, g.init(f"{prefix}/eps", np.array(eps, dtype=np.float32))], name=f"{prefix}/Add_eps")
    rs = g.op("Sqrt", [ep], name=f"{prefix}/Sqrt")
    nx = g.op("Div", [x, rs], name=f"{prefix}/Div")
    return g.op("Mul", [nx, w], name=f"{prefix}/Mul_w")


def mlp(g: G, h: str, weights, p: str) -> str:
    pn = "/model/layers." + p.split(".")[2]
    gate = g.op("MatMul", [h, linear_weights(g, weights, p + "mlp.gate_proj.weight")], name=f"{pn}/mlp/gate_proj/MatMul")
    up = g.op("MatMul", [h, linear_weights(g, weights, p + "mlp.up_proj.weight")], name=f"{pn}/mlp/up_proj/MatMul")
    sig = g.op("Sigmoid", [gate], name=f"{pn}/mlp/act/Sigmoid")
    silu = g.op("Mul", [gate, sig], name=f"{pn}/mlp/act/Mul")
    prod = g.op("Mul", [silu, up], name=f"{pn}/mlp/Mul")
    return g.op("MatMul", [prod, linear_weights(g, weights, p + "mlp.down_proj.weight")], name=f"{pn}/mlp/down_proj/MatMul")


def tied_lm_head(g: G, h: str) -> str:
    wt = g.op("Transpose", ["model.embed_tokens.weight"], name="/lm_head/Transpose", perm=[1, 0])
    return g.op("MatMul", [h, wt], name="/lm_head/MatMul", outputs=["logits"])[0]


def kv_io(cfg: dict, ft: int) -> tuple[list, list]:
    ins, outs = [], []
    KV, hd = cfg["num_key_value_heads"], cfg["head_dim"]
    for i in range(cfg["num_hidden_layers"]):
        for kind in ("key", "value"):
            ins.append(io(f"past_key_values.{i}.{kind}", ft, ["batch_size", KV, "past_sequence_length", hd]))
            outs.append(io(f"present.{i}.{kind}", ft, ["batch_size", KV, "total_sequence_length", hd]))
    return ins, outs


def finish(g: G, name: str, inputs: list, outputs: list, opsets: list, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    m = helper.make_model(graph, opset_imports=opsets, producer_name="quantgate-llama-kjv")
    m.ir_version = 8
    m.doc_string = doc
    return m


# --------------------------------------------------------------------------------------------
# Optimum layout (standard ops)
# --------------------------------------------------------------------------------------------


def build_optimum(weights: dict[str, np.ndarray], cfg: dict, ft: int) -> onnx.ModelProto:
    g = G(ft)
    d, hd = cfg["hidden_size"], cfg["head_dim"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    rep = H // KV
    eps = cfg["rms_norm_eps"]
    V = cfg["vocab_size"]
    g.init("model.embed_tokens.weight", weights["model.embed_tokens.weight"])
    cos, sin = rope_tables(cfg, EXPORT_MAX_POSITIONS)
    g.init("rotary.cos", np.concatenate([cos, cos], axis=1))  # [max_pos, head_dim]: halves repeated
    g.init("rotary.sin", np.concatenate([sin, sin], axis=1))
    i64 = np.int64

    x = g.op("Gather", ["model.embed_tokens.weight", "input_ids"], name="/model/embed_tokens/Gather", axis=0)
    # rotary factors per position: [batch, 1, seq, head_dim]
    cos_p = g.op("Unsqueeze", [g.op("Gather", ["rotary.cos", "position_ids"], name="/rotary/Gather_cos", axis=0),
                               g.const("/rotary/axis1", [1], i64)], name="/rotary/Unsqueeze_cos")
    sin_p = g.op("Unsqueeze", [g.op("Gather", ["rotary.sin", "position_ids"], name="/rotary/Gather_sin", axis=0),
                               g.const("/rotary/axis1b", [1], i64)], name="/rotary/Unsqueeze_sin")
    # additive mask [batch, 1, 1, seq, total]: key k visible to query q iff mask[b, k] == 1 and k <= past + q
    total = g.op("Gather", [g.op("Shape", ["attention_mask"], name="/mask/Shape_total"), g.const("/mask/one", 1, i64)],
                 name="/mask/Gather_total", axis=0)
    seq = g.op("Gather", [g.op("Shape", ["input_ids"], name="/mask/Shape_seq"), g.const("/mask/one_b", 1, i64)],
               name="/mask/Gather_seq", axis=0)
    past = g.op("Sub", [total, seq], name="/mask/Sub_past")
    zero, one = g.const("/mask/zero", 0, i64), g.const("/mask/step", 1, i64)
    kpos = g.op("Range", [zero, total, one], name="/mask/Range_k")
    qpos = g.op("Range", [past, total, one], name="/mask/Range_q")
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [kpos, g.const("/mask/ax0", [0], i64)], name="/mask/Unsqueeze_k"),
                                  g.op("Unsqueeze", [qpos, g.const("/mask/ax1", [1], i64)], name="/mask/Unsqueeze_q")],
                  name="/mask/LessOrEqual")
    pad = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], name="/mask/Cast", to=TensorProto.BOOL),
                             g.const("/mask/ax123", [1, 2, 3], i64)], name="/mask/Unsqueeze_pad")
    allowed = g.op("And", [causal, pad], name="/mask/And")
    neg = np.finfo(g.np_ft).min
    bias = g.op("Where", [allowed, g.init("/mask/zero_f", np.array(0, dtype=np.float32)),
                          g.init("/mask/neg_f", np.array(neg, dtype=g.np_ft))], name="/mask/Where")
    scale = g.init("/attn/scale", np.array(hd ** -0.5, dtype=np.float32))
    half = hd // 2
    sh_q = g.const("/attn/shape_q", [0, 0, H, hd], i64)
    sh_kv = g.const("/attn/shape_kv", [0, 0, KV, hd], i64)
    sh_g = g.const("/attn/shape_group", [0, KV, rep, -1, hd], i64)
    sh_h = g.const("/attn/shape_heads", [0, H, -1, hd], i64)
    sh_o = g.const("/attn/shape_out", [0, 0, H * hd], i64)
    ax2 = g.const("/attn/ax2", [2], i64)
    split_half = g.const("/rotary/split", [half, half], i64)

    def rope(t: str, p: str) -> str:
        a, b = g.op("Split", [t, split_half], n_out=2, name=f"{p}/Split", axis=-1)
        rot = g.op("Concat", [g.op("Neg", [b], name=f"{p}/Neg"), a], name=f"{p}/Concat", axis=-1)
        return g.op("Add", [g.op("Mul", [t, cos_p], name=f"{p}/Mul_cos"), g.op("Mul", [rot, sin_p], name=f"{p}/Mul_sin")],
                    name=f"{p}/Add")

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        pn = f"/model/layers.{i}"
        h = rms_norm_std(g, x, g.init(p + "input_layernorm.weight", weights[p + "input_layernorm.weight"]), eps,
                         f"{pn}/input_layernorm")
        q = g.op("MatMul", [h, linear_weights(g, weights, p + "self_attn.q_proj.weight")], name=f"{pn}/attn/q_proj/MatMul")
        k = g.op("MatMul", [h, linear_weights(g, weights, p + "self_attn.k_proj.weight")], name=f"{pn}/attn/k_proj/MatMul")
        v = g.op("MatMul", [h, linear_weights(g, weights, p + "self_attn.v_proj.weight")], name=f"{pn}/attn/v_proj/MatMul")
        q = g.op("Transpose", [g.op("Reshape", [q, sh_q], name=f"{pn}/attn/Reshape_q")], name=f"{pn}/attn/Transpose_q",
                 perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, sh_kv], name=f"{pn}/attn/Reshape_k")], name=f"{pn}/attn/Transpose_k",
                 perm=[0, 2, 1, 3])
        v = g.op("Transpose", [g.op("Reshape", [v, sh_kv], name=f"{pn}/attn/Reshape_v")], name=f"{pn}/attn/Transpose_v",
                 perm=[0, 2, 1, 3])
        q, k = rope(q, f"{pn}/attn/rope_q"), rope(k, f"{pn}/attn/rope_k")
        pk = g.op("Concat", [f"past_key_values.{i}.key", k], name=f"{pn}/attn/Concat_k", outputs=[f"present.{i}.key"],
                  axis=2)[0]
        pv = g.op("Concat", [f"past_key_values.{i}.value", v], name=f"{pn}/attn/Concat_v",
                  outputs=[f"present.{i}.value"], axis=2)[0]
        # grouped-query attention without copying K/V: queries [b, kv, rep, s, hd] against keys [b, kv, 1, t, hd]
        qg = g.op("Reshape", [g.op("Mul", [q, scale], name=f"{pn}/attn/Mul_scale"), sh_g], name=f"{pn}/attn/Reshape_qg")
        kg = g.op("Unsqueeze", [pk, ax2], name=f"{pn}/attn/Unsqueeze_k")
        vg = g.op("Unsqueeze", [pv, ax2], name=f"{pn}/attn/Unsqueeze_v")
        kt = g.op("Transpose", [kg], name=f"{pn}/attn/Transpose_kt", perm=[0, 1, 2, 4, 3])
        scores = g.op("Add", [g.op("MatMul", [qg, kt], name=f"{pn}/attn/MatMul_qk"), bias], name=f"{pn}/attn/Add_mask")
        probs = g.op("Softmax", [scores], name=f"{pn}/attn/Softmax", axis=-1)
        ctx = g.op("Reshape", [g.op("MatMul", [probs, vg], name=f"{pn}/attn/MatMul_pv"), sh_h], name=f"{pn}/attn/Reshape_ctx")
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], name=f"{pn}/attn/Transpose_ctx", perm=[0, 2, 1, 3]), sh_o],
                   name=f"{pn}/attn/Reshape_out")
        o = g.op("MatMul", [ctx, linear_weights(g, weights, p + "self_attn.o_proj.weight")], name=f"{pn}/attn/o_proj/MatMul")
        x = g.op("Add", [x, o], name=f"{pn}/Add_attn")
        h = rms_norm_std(g, x, g.init(p + "post_attention_layernorm.weight", weights[p + "post_attention_layernorm.weight"]),
                         eps, f"{pn}/post_attention_layernorm")
        x = g.op("Add", [x, mlp(g, h, weights, p)], name=f"{pn}/Add_mlp")
    h = rms_norm_std(g, x, g.init("model.norm.weight", weights["model.norm.weight"]), eps, "/model/norm")
    tied_lm_head(g, h)
    kin, kout = kv_io(cfg, ft)
    inputs = [io("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              io("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
              io("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"])] + kin
    outputs = [io("logits", ft, ["batch_size", "sequence_length", V])] + kout
    return finish(g, "llama_kjv_optimum", inputs, outputs, [helper.make_opsetid("", OPSET)],
                  "Llama-architecture LM trained on the KJV (public domain); Optimum decoder-with-past layout. "
                  "See examples/llama-kjv/README.md")


# --------------------------------------------------------------------------------------------
# ONNX Runtime GenAI layout (contrib ops)
# --------------------------------------------------------------------------------------------


def build_genai(weights: dict[str, np.ndarray], cfg: dict, ft: int) -> onnx.ModelProto:
    g = G(ft)
    hd = cfg["head_dim"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    V = cfg["vocab_size"]
    L = cfg["num_hidden_layers"]
    i64 = np.int64
    g.init("model.embed_tokens.weight", weights["model.embed_tokens.weight"])
    cos, sin = rope_tables(cfg, EXPORT_MAX_POSITIONS)
    g.init("cos_cache", cos)
    g.init("sin_cache", sin)
    x = g.op("Gather", ["model.embed_tokens.weight", "input_ids"], name="/model/embed_tokens/Gather", axis=0)
    # GroupQueryAttention's sequence bookkeeping, as the GenAI builder derives it from attention_mask
    ssum = g.op("ReduceSum", ["attention_mask", g.const("/model/attn_mask_reformat/axes", [1], i64)],
                name="/model/attn_mask_reformat/ReduceSum", keepdims=0)
    sub = g.op("Sub", [ssum, g.const("/model/attn_mask_reformat/one", 1, i64)], name="/model/attn_mask_reformat/Sub")
    seqlens_k = g.op("Cast", [sub], name="/model/attn_mask_reformat/Cast_seqlens", to=TensorProto.INT32)
    tot = g.op("Gather", [g.op("Shape", ["attention_mask"], name="/model/attn_mask_reformat/Shape"),
                          g.const("/model/attn_mask_reformat/idx", 1, i64)], name="/model/attn_mask_reformat/Gather", axis=0)
    total_len = g.op("Cast", [tot], name="/model/attn_mask_reformat/Cast_total", to=TensorProto.INT32)

    h = g.op("SimplifiedLayerNormalization", [x, g.init("model.layers.0.input_layernorm.weight",
                                                        weights["model.layers.0.input_layernorm.weight"])],
             name="/model/layers.0/input_layernorm/LayerNorm", axis=-1, epsilon=eps, stash_type=1)
    residual = x
    for i in range(L):
        p = f"model.layers.{i}."
        pn = f"/model/layers.{i}"
        q = g.op("MatMul", [h, linear_weights(g, weights, p + "self_attn.q_proj.weight")], name=f"{pn}/attn/q_proj/MatMul")
        k = g.op("MatMul", [h, linear_weights(g, weights, p + "self_attn.k_proj.weight")], name=f"{pn}/attn/k_proj/MatMul")
        v = g.op("MatMul", [h, linear_weights(g, weights, p + "self_attn.v_proj.weight")], name=f"{pn}/attn/v_proj/MatMul")
        attn = g.op("GroupQueryAttention",
                    [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens_k, total_len,
                     "cos_cache", "sin_cache"],
                    name=f"{pn}/attn/GroupQueryAttention", domain="com.microsoft",
                    outputs=[f"{pn}/attn/GroupQueryAttention/output_0", f"present.{i}.key", f"present.{i}.value"],
                    num_heads=H, kv_num_heads=KV, do_rotary=1, rotary_interleaved=0, scale=float(hd ** -0.5),
                    local_window_size=-1)[0]
        o = g.op("MatMul", [attn, linear_weights(g, weights, p + "self_attn.o_proj.weight")], name=f"{pn}/attn/o_proj/MatMul")
        outs = g.op("SkipSimplifiedLayerNormalization",
                    [o, residual, g.init(p + "post_attention_layernorm.weight", weights[p + "post_attention_layernorm.weight"])],
                    name=f"{pn}/post_attention_layernorm/SkipLayerNorm", domain="com.microsoft", n_out=4, epsilon=eps)
        h, residual = outs[0], outs[3]
        m = mlp(g, h, weights, p)
        if i + 1 < L:
            w = g.init(f"model.layers.{i + 1}.input_layernorm.weight", weights[f"model.layers.{i + 1}.input_layernorm.weight"])
            name = f"/model/layers.{i + 1}/input_layernorm/SkipLayerNorm"
        else:
            w = g.init("model.norm.weight", weights["model.norm.weight"])
            name = "/model/layers.final_norm_layernorm/SkipLayerNorm"
        outs = g.op("SkipSimplifiedLayerNormalization", [m, residual, w], name=name, domain="com.microsoft", n_out=4,
                    epsilon=eps)
        h, residual = outs[0], outs[3]
    tied_lm_head(g, h)
    kin, kout = kv_io(cfg, ft)
    inputs = [io("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              io("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"])] + kin
    outputs = [io("logits", ft, ["batch_size", "sequence_length", V])] + kout
    return finish(g, "llama_kjv_genai", inputs, outputs,
                  [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
                  "Llama-architecture LM trained on the KJV (public domain); ONNX Runtime GenAI layout with contrib "
                  "ops. See examples/llama-kjv/README.md")


# --------------------------------------------------------------------------------------------
# Reference logits (torch)
# --------------------------------------------------------------------------------------------


def f32_b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def write_reference(path: str, weights, cfg, eval_ids: list[int], calib_ids: list[int], val_loss) -> None:
    sys.path.insert(0, HERE)
    import torch
    from train import LlamaKJV  # noqa: E402

    tcfg = dict(cfg)
    tcfg["max_position_embeddings"] = max(cfg["max_position_embeddings"], 128)
    model = LlamaKJV(tcfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        a = torch.tensor([eval_ids[0:16], calib_ids[0:16]], dtype=torch.long)
        la = model(a).numpy()
        b = torch.tensor([eval_ids[100:228]], dtype=torch.long)
        lb = model(b).numpy()
    picks = [0, 63, 127]
    ref = {
        "comment": "torch reference logits (float32 little-endian, base64) for check_onnx.mjs; "
                   "'prefix' is how many tokens go in as a first call whose present is fed back as past",
        "cases": [
            {"input_ids": a.tolist(), "prefix": 0, "positions": None, "shape": list(la.shape), "logits_f32_b64": f32_b64(la)},
            {"input_ids": a.tolist(), "prefix": 10, "positions": list(range(10, 16)), "shape": [2, 6, la.shape[2]],
             "logits_f32_b64": f32_b64(la[:, 10:16])},
            {"input_ids": b.tolist(), "prefix": 0, "positions": picks, "shape": [1, 3, lb.shape[2]],
             "logits_f32_b64": f32_b64(lb[:, picks])},
            {"input_ids": b.tolist(), "prefix": 120, "positions": list(range(120, 128)), "shape": [1, 8, lb.shape[2]],
             "logits_f32_b64": f32_b64(lb[:, 120:128])},
        ],
        "val_loss": val_loss,
        "ctx": 128,
    }
    with open(path, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

VARIANTS = ["model", "model-ext", "model-fp16", "genai", "genai-fp16"]


def save_variant(name: str, weights, cfg, out_dir: str) -> str:
    fp16 = name.endswith("fp16")
    ft = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    m = build_genai(weights, cfg, ft) if name.startswith("genai") else build_optimum(weights, cfg, ft)
    path = os.path.join(out_dir, name + ".onnx")
    if name == "model-ext":
        data = name + ".onnx.data"
        if os.path.exists(os.path.join(out_dir, data)):
            os.remove(os.path.join(out_dir, data))
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                        size_threshold=1024)
    else:
        onnx.save_model(m, path)
    if name.startswith("model"):
        onnx.checker.check_model(path, full_check=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="train.py's checkpoint (needs torch)")
    src.add_argument("--weights", help="folder with config.json and safetensors shards")
    src.add_argument("--random", help="config JSON: random (seeded) weights of that shape, for test fixtures")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    ap.add_argument("--write-weights", action="store_true", help="also write weights/ (safetensors shards)")
    ap.add_argument("--reference", action="store_true", help="write reference_logits.json (needs torch)")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    if args.checkpoint:
        import torch

        ck = torch.load(args.checkpoint)
        cfg = ck["config"]
        weights = {k: v.numpy().astype(np.float32) for k, v in ck["model"].items()}
    elif args.weights:
        weights, cfg = read_shards(args.weights)
    else:
        with open(args.random) as f:
            cfg = json.load(f)
        weights = random_weights(cfg, args.seed)
    if args.write_weights:
        write_shards(os.path.join(args.out_dir, "weights"), weights, cfg)
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {VARIANTS}")
        path = save_variant(name, weights, cfg, args.out_dir)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)", flush=True)
    if args.reference:
        tiny = os.path.join(HERE, "..", "tiny-lm")
        with open(os.path.join(tiny, "eval_ids.json")) as f:
            ids = json.load(f)
        val = None
        stats_path = os.path.join(args.out_dir, "train_stats.json")
        if os.path.exists(stats_path):
            val = json.load(open(stats_path)).get("val_loss_exact")
        if args.random:
            ids = {k: [t % cfg["vocab_size"] for t in v] for k, v in ids.items()}
        write_reference(os.path.join(args.out_dir, "reference_logits.json"), weights, cfg, ids["eval"], ids["calib"], val)
        print("wrote reference_logits.json", flush=True)


if __name__ == "__main__":
    main()
