#!/usr/bin/env python3
"""Raw model throughput, for comparison with `vecdrop import`: ONNX Runtime (the same library and
model.onnx vecdrop loads) on the texts of a CSV's `text` column, batches of 128 sorted by length,
truncation 256, 2 intra-op threads. Run from the repo root with the .venv:
    .venv/bin/python scripts/bench_raw_model.py [CSV]   # default examples/data/seed.csv
Prints texts/s and tokens/s. Until `vecdrop bench` exists this is the reference figure."""
import sys
import csv, time, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
texts=[r["text"] for r in csv.DictReader(open(sys.argv[1] if len(sys.argv) > 1 else "examples/data/seed.csv"))]
tok=Tokenizer.from_file("models/all-MiniLM-L6-v2/tokenizer.json"); tok.enable_truncation(256); tok.no_padding()
so=ort.SessionOptions(); so.intra_op_num_threads=2; so.graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s=ort.InferenceSession("models/all-MiniLM-L6-v2/model.onnx", so, providers=["CPUExecutionProvider"])
enc=tok.encode_batch(texts); lens=[len(e.ids) for e in enc]
order=sorted(range(len(texts)), key=lambda i:-lens[i]); bs=128
t=time.time(); ntok=0
for k in range(0,len(order),bs):
    idx=order[k:k+bs]; L=max(lens[i] for i in idx)
    ids=np.zeros((len(idx),L),np.int64); m=np.zeros_like(ids)
    for r,i in enumerate(idx): ids[r,:lens[i]]=enc[i].ids; m[r,:lens[i]]=1
    s.run(None,{"input_ids":ids,"attention_mask":m,"token_type_ids":np.zeros_like(ids)}); ntok+=int(m.sum())
dt=time.time()-t
print(f"raw model: {len(texts)} texts in {dt:.1f}s = {len(texts)/dt:.0f} texts/s, {ntok/dt:.0f} tokens/s, mean {np.mean(lens):.1f} tokens")
