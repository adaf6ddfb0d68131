"""Writes the example Parquet files for `make run` (idempotent; overwrites nothing that exists).

  examples/drop/products.parquet        from examples/sources/products.csv (vecdrop embeds the text)
  examples/drop/papers-vectors.parquet  from examples/sources/papers.csv, with an `embedding`
                                        column computed here with the bundled ONNX model (vecdrop
                                        skips the model for these rows)

Usage: .venv/bin/python scripts/make_example_parquet.py [--model models/all-MiniLM-L6-v2]
"""
import argparse
import csv
import pathlib

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as source:
        return list(csv.DictReader(source))


def embed(model_dir, texts):
    """all-MiniLM-L6-v2 as sentence-transformers does it: 256-token truncation, mean pooling, L2."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(["last_hidden_state"], inputs)[0]
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def write(rows, target, vectors=None):
    columns = {name: [row[name] for row in rows] for name in ("id", "text", "category")}
    table = pa.table(columns)
    if vectors is not None:
        table = table.append_column("embedding", pa.array(vectors.astype(np.float32).tolist(), type=pa.list_(pa.float32())))
    pq.write_table(table, target, compression="zstd")
    print(f"wrote {target.relative_to(ROOT)} ({len(rows)} rows{', with vectors' if vectors is not None else ''})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "models/all-MiniLM-L6-v2"))
    args = parser.parse_args()
    drop = ROOT / "examples/drop"
    products = drop / "products.parquet"
    if not products.exists():
        write(read_rows(ROOT / "examples/sources/products.csv"), products)
    papers = drop / "papers-vectors.parquet"
    if not papers.exists():
        rows = read_rows(ROOT / "examples/sources/papers.csv")
        write(rows, papers, embed(pathlib.Path(args.model), [row["text"] for row in rows]))


if __name__ == "__main__":
    main()
