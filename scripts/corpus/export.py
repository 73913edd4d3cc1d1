#!/usr/bin/python3
"""Exports the conformance corpus (test/corpus/*.onnx): small models written the way real exporters write
them, so that quantize -> emit -> ONNX Runtime is tested on the habits that broke it before.

Run with Debian's python3-torch and python3-onnx:  /usr/bin/python3 scripts/corpus/export.py [out_dir]

Every model is small (well under 300 KB) and deterministic (fixed seeds). What each file covers is in
CORPUS below and in test/corpus/README.md (written by this script).
"""

import io
import os
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

torch.manual_seed(0)
torch.set_num_threads(1)
RNG = np.random.default_rng(0)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "test", "corpus")
CORPUS = []


def torch_export(module, args, opset, input_names, output_names, dynamic_axes=None, **kw):
    module.eval()
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        args,
        buf,
        opset_version=opset,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
        **kw,
    )
    return onnx.load_from_string(buf.getvalue())


def save(model, name, covers, check=True):
    if check:
        onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    size = os.path.getsize(path)
    assert size < 300_000, f"{name} is {size} bytes"
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    CORPUS.append((name, opset, size, covers))
    print(f"{name}: opset {opset}, {size} bytes")


def fixed_batch(model, batch=2):
    """Replace symbolic first dims of inputs/outputs by nothing (keep dynamic) - no-op helper kept for clarity."""
    return model


# --- 1. MLP at opset 9 (paddle2onnx's default opset), K = 72 and 100: not a multiple of any block size ---
class Mlp(torch.nn.Module):
    def __init__(self, d0, d1, d2):
        super().__init__()
        self.fc1 = torch.nn.Linear(d0, d1)
        self.fc2 = torch.nn.Linear(d1, d2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


m = Mlp(72, 100, 40)
# 3-D input: torch writes MatMul (weight stored [in, out]) + Add, as for transformer layers.
save(
    torch_export(m, (torch.randn(2, 5, 72),), 9, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}),
    "mlp_opset9",
    "opset 9; MatMul with weight [in, out] + Add; K=72 and K=100 (not a multiple of any block size)",
)
# 2-D input: Gemm with transB=1.
save(
    torch_export(Mlp(72, 100, 40), (torch.randn(2, 72),), 11, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}),
    "gemm_opset11",
    "opset 11; Gemm transB=1 with bias; K=72 and K=100",
)


# --- 2. CNN: K not a multiple of any block size, depthwise and grouped Conv ---
class Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 40, 3, padding=1)  # K = 27
        self.dw = torch.nn.Conv2d(40, 40, 5, padding=2, groups=40)  # depthwise, K = 25
        self.gc = torch.nn.Conv2d(40, 96, 3, padding=1, groups=4)  # grouped, K = 90
        self.fc = torch.nn.Linear(96, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.gc(x))
        return self.fc(x.mean(dim=(2, 3)))


save(
    torch_export(Cnn(), (torch.randn(1, 3, 12, 12),), 11, ["image"], ["logits"], {"image": {0: "batch"}, "logits": {0: "batch"}}),
    "cnn_grouped_opset11",
    "opset 11; Conv K=27, depthwise Conv (groups=40, K=25), grouped Conv (groups=4, K=90), Gemm",
)


# --- 3. LSTM and GRU ---
class Lstm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(40, 48, batch_first=True)
        self.fc = torch.nn.Linear(48, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y)


save(
    torch_export(Lstm(), (torch.randn(1, 6, 40),), 13, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}),
    "lstm_opset13",
    "opset 13; LSTM (W [1,192,40], R [1,192,48], B) then MatMul",
)


class Gru(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(32, 40, batch_first=True, bidirectional=True)
        self.fc = torch.nn.Linear(80, 12)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y)


save(
    torch_export(Gru(), (torch.randn(1, 6, 32),), 11, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}),
    "gru_bidi_opset11",
    "opset 11; bidirectional GRU (W [2,120,32], R [2,120,40]) then MatMul",
)


# --- 4. A small transformer block at opset 17 (LayerNormalization, attention MatMuls, GELU) ---
class Block(torch.nn.Module):
    def __init__(self, d=48, ff=96):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.up = torch.nn.Linear(d, ff)
        self.down = torch.nn.Linear(ff, d)
        self.d = d

    def forward(self, x):
        h = self.ln1(x)
        q, k, v = self.qkv(h).split(self.d, dim=-1)
        att = torch.softmax(q @ k.transpose(-1, -2) / self.d**0.5, dim=-1)
        x = x + self.proj(att @ v)
        return x + self.down(torch.nn.functional.gelu(self.up(self.ln2(x))))


block = torch_export(Block(), (torch.randn(1, 8, 48),), 17, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}})
save(block, "block_opset17", "opset 17; LayerNormalization, attention MatMuls (K=48, 96), GELU")


# --- 5. Weights as Constant nodes (some exporters never write initializers) ---
def initializers_to_constants(model):
    g = model.graph
    consts = []
    for t in list(g.initializer):
        consts.append(helper.make_node("Constant", [], [t.name], value=t, name=f"Constant_{t.name}"))
    del g.initializer[:]
    nodes = consts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


save(
    initializers_to_constants(torch_export(Mlp(72, 100, 40), (torch.randn(2, 5, 72),), 11, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}})),
    "constants_opset11",
    "opset 11; every weight a Constant node, no initializers",
)


# --- 6. fp16 and bf16 weights behind Cast (mixed-precision exports keep activations float32) ---
def to_bf16_bits(a):
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even
    return u.astype(np.uint16)


def weights_behind_cast(model, elem):
    g = model.graph
    new_inits, casts = [], []
    for t in g.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or a.ndim < 2:
            new_inits.append(t)
            continue
        stored = t.name + ("_fp16" if elem == TensorProto.FLOAT16 else "_bf16")
        if elem == TensorProto.FLOAT16:
            nt = numpy_helper.from_array(a.astype(np.float16), stored)
        else:
            nt = helper.make_tensor(stored, TensorProto.BFLOAT16, a.shape, to_bf16_bits(a).tobytes(), raw=True)
        new_inits.append(nt)
        casts.append(helper.make_node("Cast", [stored], [t.name], to=TensorProto.FLOAT, name=f"Cast_{t.name}"))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


save(
    weights_behind_cast(torch_export(Block(), (torch.randn(1, 8, 48),), 13, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}), TensorProto.FLOAT16),
    "fp16_cast_opset13",
    "opset 13; float16 weight initializers behind Cast to float",
)
save(
    weights_behind_cast(torch_export(Mlp(72, 100, 40), (torch.randn(2, 72),), 17, ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}), TensorProto.BFLOAT16),
    "bf16_cast_opset17",
    "opset 17; bfloat16 weight initializers behind Cast to float (Gemm)",
)


# --- 7. A model that computes in float16: fp16 weights feed Conv and MatMul directly, no Cast ---
def convert_to_fp16(model):
    """Every float tensor and value becomes float16 (what onnxconverter-common's float16 conversion writes with keep_io_types=False)."""
    g = model.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    for n in g.node:
        for a in n.attribute:
            if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
    return model


class Fp16Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(4, 48, 3, padding=1)  # K = 36
        self.c2 = torch.nn.Conv2d(48, 32, 3, padding=1)  # K = 432
        self.fc = torch.nn.Linear(32, 40)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        x = x.mean(dim=(2, 3)).unsqueeze(1)  # [B, 1, 32]: MatMul, not Gemm
        return self.fc(x)


save(
    convert_to_fp16(torch_export(Fp16Net(), (torch.randn(1, 4, 8, 8),), 17, ["image"], ["y"], {"image": {0: "batch"}, "y": {0: "batch"}})),
    "fp16_compute_opset17",
    "opset 17; the whole model computes in float16: fp16 weights feed Conv and MatMul directly",
)


# --- 8. NHWC graph as tf2onnx writes it: Transposes around Conv, HWIO kernel behind a Transpose ---
def nhwc_model():
    h, w, c, o = 10, 10, 8, 32
    kernel_hwio = RNG.standard_normal((3, 3, c, o)).astype(np.float32) * 0.2
    bias = RNG.standard_normal(o).astype(np.float32) * 0.1
    kernel2 = RNG.standard_normal((o, o, 3, 3)).astype(np.float32) * 0.1  # folded to OIHW already (tf2onnx's usual output)
    dense = RNG.standard_normal((o, 24)).astype(np.float32) * 0.2
    p = "StatefulPartitionedCall/model/"
    nodes = [
        helper.make_node("Transpose", ["input_1"], [p + "conv2d/Conv2D__6:0"], perm=[0, 3, 1, 2], name=p + "conv2d/Conv2D__6"),
        helper.make_node("Transpose", [p + "conv2d/Conv2D/ReadVariableOp:0"], [p + "conv2d/Conv2D_weights_fused_bn"], perm=[3, 2, 0, 1], name=p + "conv2d/kernel_T"),
        helper.make_node(
            "Conv",
            [p + "conv2d/Conv2D__6:0", p + "conv2d/Conv2D_weights_fused_bn", p + "conv2d/BiasAdd/ReadVariableOp:0"],
            [p + "conv2d/BiasAdd:0"],
            pads=[1, 1, 1, 1],
            kernel_shape=[3, 3],
            name=p + "conv2d/BiasAdd",
        ),
        helper.make_node("Relu", [p + "conv2d/BiasAdd:0"], [p + "conv2d/Relu:0"], name=p + "conv2d/Relu"),
        helper.make_node("Conv", [p + "conv2d/Relu:0", p + "conv2d_1/Conv2D/ReadVariableOp:0"], [p + "conv2d_1/Conv2D:0"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name=p + "conv2d_1/Conv2D"),
        helper.make_node("Transpose", [p + "conv2d_1/Conv2D:0"], [p + "conv2d_1/Relu:0__8"], perm=[0, 2, 3, 1], name=p + "conv2d_1/Conv2D__8"),
        helper.make_node("ReduceMean", [p + "conv2d_1/Relu:0__8"], [p + "gap:0"], axes=[1, 2], keepdims=0, name=p + "global_average_pooling2d/Mean"),
        helper.make_node("MatMul", [p + "gap:0", p + "dense/MatMul/ReadVariableOp:0"], ["dense"], name=p + "dense/MatMul"),
    ]
    inits = [
        numpy_helper.from_array(kernel_hwio, p + "conv2d/Conv2D/ReadVariableOp:0"),
        numpy_helper.from_array(bias, p + "conv2d/BiasAdd/ReadVariableOp:0"),
        numpy_helper.from_array(kernel2, p + "conv2d_1/Conv2D/ReadVariableOp:0"),
        numpy_helper.from_array(dense, p + "dense/MatMul/ReadVariableOp:0"),
    ]
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__12", h, w, c])],
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["unk__13", 24])],
        inits,
    )
    model = helper.make_model(graph, producer_name="tf2onnx", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


save(nhwc_model(), "nhwc_tf2onnx_opset13", "opset 13; NHWC input with Transposes around Conv as tf2onnx writes them; HWIO kernel behind Transpose")


# --- 9. A Gemm inside an If branch (the taken branch depends on the input) ---
def if_model():
    d, hdim, out = 40, 64, 16
    w_then = RNG.standard_normal((hdim, d)).astype(np.float32) / np.sqrt(d)
    b_then = RNG.standard_normal(hdim).astype(np.float32) * 0.1
    w_else = RNG.standard_normal((hdim, d)).astype(np.float32) / np.sqrt(d)
    w_out = RNG.standard_normal((hdim, out)).astype(np.float32) / np.sqrt(hdim)
    then_graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "then.fc.weight", "then.fc.bias"], ["then_out"], transB=1, name="then/Gemm")],
        "then_branch",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w_then, "then.fc.weight"), numpy_helper.from_array(b_then, "then.fc.bias")],
    )
    # The else branch reads an initializer of the main graph (outer scope), as scripted torch exports do.
    else_graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "else.fc.weight"], ["else_out"], transB=1, name="else/Gemm")],
        "else_branch",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="ReduceSum"),
        helper.make_node("Greater", ["total", "zero"], ["cond"], name="Greater"),
        helper.make_node("If", ["cond"], ["h"], then_branch=then_graph, else_branch=else_graph, name="If_branch"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="Relu"),
        helper.make_node("MatMul", ["h_relu", "out.weight"], ["y"], name="out/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "if_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out])],
        [numpy_helper.from_array(np.array(0, dtype=np.float32), "zero"), numpy_helper.from_array(w_else, "else.fc.weight"), numpy_helper.from_array(w_out, "out.weight")],
    )
    model = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


save(if_model(), "if_gemm_opset13", "opset 13; Gemm inside both branches of an If (one branch's weight in the branch, one in the outer scope)")


# --- 10. Tied weights: one Linear applied twice, and a tied embedding / output projection ---
class Tied(torch.nn.Module):
    def __init__(self, vocab=64, d=48):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.shared = torch.nn.Linear(d, d)
        self.mix = torch.nn.Linear(d, d)

    def forward(self, ids):
        h = self.emb(ids)
        h = torch.relu(self.shared(h))
        h = torch.relu(self.mix(h))
        h = torch.relu(self.shared(h))  # the same weight read twice
        return h @ self.emb.weight.t()  # output projection tied to the embedding


save(
    torch_export(Tied(), (torch.randint(0, 64, (1, 7)),), 14, ["ids"], ["logits"], {"ids": {0: "batch"}, "logits": {0: "batch"}}),
    "tied_opset14",
    "opset 14; a Linear applied twice (one weight read by two MatMuls) and an embedding tied to the output projection",
)


# --- 11. Already quantized by the vendor: uint8/int8 weights + DequantizeLinear (QDQ), and its float reference ---
def quantized_model():
    d0, d1, d2 = 64, 96, 32
    w1 = RNG.standard_normal((d0, d1)).astype(np.float32) / np.sqrt(d0)
    w2 = RNG.standard_normal((d1, d2)).astype(np.float32) / np.sqrt(d1)
    # per-tensor uint8 (asymmetric) for w1, per-channel int8 (symmetric, axis 1) for w2
    lo, hi = w1.min(), w1.max()
    s1 = np.float32((hi - lo) / 255)
    z1 = np.uint8(np.clip(np.round(-lo / s1), 0, 255))
    q1 = np.clip(np.round(w1 / s1) + z1, 0, 255).astype(np.uint8)
    s2 = (np.abs(w2).max(axis=0) / 127).astype(np.float32)
    q2 = np.clip(np.round(w2 / s2), -127, 127).astype(np.int8)
    nodes_q = [
        helper.make_node("DequantizeLinear", ["fc1.weight_quantized", "fc1.weight_scale", "fc1.weight_zero_point"], ["fc1.weight_dq"], name="fc1.weight_DequantizeLinear"),
        helper.make_node("MatMul", ["x", "fc1.weight_dq"], ["h"], name="fc1/MatMul"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="Relu"),
        helper.make_node("DequantizeLinear", ["fc2.weight_quantized", "fc2.weight_scale", "fc2.weight_zero_point"], ["fc2.weight_dq"], axis=1, name="fc2.weight_DequantizeLinear"),
        helper.make_node("MatMul", ["h_relu", "fc2.weight_dq"], ["y"], name="fc2/MatMul"),
    ]
    inits_q = [
        numpy_helper.from_array(q1, "fc1.weight_quantized"),
        numpy_helper.from_array(np.array(s1, dtype=np.float32), "fc1.weight_scale"),
        numpy_helper.from_array(np.array(z1, dtype=np.uint8), "fc1.weight_zero_point"),
        numpy_helper.from_array(q2, "fc2.weight_quantized"),
        numpy_helper.from_array(s2, "fc2.weight_scale"),
        numpy_helper.from_array(np.zeros(d2, dtype=np.int8), "fc2.weight_zero_point"),
    ]
    io_ = (
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", d2])],
    )
    qm = helper.make_model(helper.make_graph(nodes_q, "qdq", *io_, inits_q), producer_name="onnx.quantize", opset_imports=[helper.make_opsetid("", 13)])
    qm.ir_version = 7
    nodes_f = [
        helper.make_node("MatMul", ["x", "fc1.weight"], ["h"], name="fc1/MatMul"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="Relu"),
        helper.make_node("MatMul", ["h_relu", "fc2.weight"], ["y"], name="fc2/MatMul"),
    ]
    fm = helper.make_model(
        helper.make_graph(nodes_f, "float", *io_, [numpy_helper.from_array(w1, "fc1.weight"), numpy_helper.from_array(w2, "fc2.weight")]),
        producer_name="pytorch",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    fm.ir_version = 7
    return qm, fm


qm, fm = quantized_model()
save(qm, "prequantized_qdq_opset13", "opset 13; already quantized: uint8 per-tensor and int8 per-channel weights behind DequantizeLinear")
save(fm, "prequantized_float_reference", "the float model prequantized_qdq_opset13 was quantized from (its reference_model)")


# --- 12. Opset 21 (onnx 1.12 cannot check it; ONNX Runtime loads it) ---
def opset21_model():
    d0, d1, d2 = 72, 100, 40
    w1 = RNG.standard_normal((d0, d1)).astype(np.float32) / np.sqrt(d0)
    w2 = RNG.standard_normal((d1, d2)).astype(np.float32) / np.sqrt(d1)
    b1 = RNG.standard_normal(d1).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.weight"], ["h0"], name="/fc1/MatMul"),
        helper.make_node("Add", ["h0", "fc1.bias"], ["h"], name="/fc1/Add"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="/Relu"),
        helper.make_node("MatMul", ["h_relu", "fc2.weight"], ["y"], name="/fc2/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp21",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5, d0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, d2])],
        [numpy_helper.from_array(w1, "fc1.weight"), numpy_helper.from_array(b1, "fc1.bias"), numpy_helper.from_array(w2, "fc2.weight")],
    )
    model = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


save(opset21_model(), "mlp_opset21", "opset 21 (IR 10); MatMul K=72 and K=100", check=False)



# --- 13. Conv at opset 9 (paddle2onnx's default): 1-D and 2-D Conv with K not a multiple of any block size ---
class AudioCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv1d(13, 64, 5, padding=2)  # K = 65
        self.c2 = torch.nn.Conv1d(64, 48, 3, padding=1, groups=2)  # grouped, K = 96
        self.fc = torch.nn.Linear(48, 6)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean(dim=2))


save(
    torch_export(AudioCnn(), (torch.randn(1, 13, 20),), 9, ["features"], ["logits"], {"features": {0: "batch"}, "logits": {0: "batch"}}),
    "conv1d_opset9",
    "opset 9; Conv1d K=65 and grouped Conv1d K=96 (padded blocks sliced back with Slice attributes), Gemm",
)

with open(os.path.join(OUT, "README.md"), "w") as f:
    f.write("# Conformance corpus\n\nWritten by `scripts/corpus/export.py` (Debian python3-torch and python3-onnx); ")
    f.write("tested by `test/conformance.test.ts`, measured by `npm run bench:conformance`.\n\n")
    f.write("| file | opset | bytes | covers |\n| --- | --- | --- | --- |\n")
    for name, opset, size, covers in CORPUS:
        f.write(f"| `{name}.onnx` | {opset} | {size} | {covers} |\n")
total = sum(s for _, _, s, _ in CORPUS)
print(f"total {total} bytes")
assert total < 3_000_000
