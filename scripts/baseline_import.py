#!/usr/bin/env python3
"""The batch-import script vecdrop replaces, as users write it: pandas reads the whole CSV, the
model embeds the texts in batches of 32 sorted by length (sentence-transformers' `encode`), pymilvus
inserts each chunk, a JSON checkpoint records the rows done, tqdm shows progress, a flush ends it.

One difference from the usual script: sentence-transformers needs PyTorch, which this project does
not install, so the same all-MiniLM-L6-v2 runs through ONNX Runtime's Python API with the same
tokenizer, 256-token truncation, mean pooling and L2 normalisation. On a CPU that is the faster of
the two runtimes, so the comparison favours the script.

    .venv/bin/python scripts/baseline_import.py CSV --uri http://127.0.0.1:19530 --collection NAME

Prints one JSON line: rows, whole-run seconds, start-up seconds (process start to the first batch
sent to the model: imports, reading the CSV, loading the model, connecting, creating the collection),
rows/s after start-up and the closing flush's seconds. `scripts/bench-vs-script.sh` runs it beside `vecdrop import`.
"""
import time

PROCESS_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pandas as pd  # noqa: E402
from pymilvus import DataType, MilvusClient  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from tqdm import tqdm  # noqa: E402

BATCH_SIZE = 32  # sentence-transformers' default
CHUNK_ROWS = 512  # rows per insert and checkpoint
MAX_TOKENS = 256


class Model:
    def __init__(self, model_dir, threads):
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.first_batch_at = None

    def encode(self, texts):
        """Vectors of `texts` in their order; batches of 32 sorted by length, like sentence-transformers."""
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda index: -len(encodings[index].ids))
        vectors = [None] * len(texts)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            longest = max(len(encodings[index].ids) for index in batch)
            ids = np.zeros((len(batch), longest), np.int64)
            mask = np.zeros_like(ids)
            for row, index in enumerate(batch):
                length = len(encodings[index].ids)
                ids[row, :length] = encodings[index].ids
                mask[row, :length] = 1
            if self.first_batch_at is None:
                self.first_batch_at = time.time()
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for row, index in enumerate(batch):
                vectors[index] = pooled[row].tolist()
        return vectors


def create_collection(client, name, dimension):
    if client.has_collection(name):
        return
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=256)
    schema.add_field("text", DataType.VARCHAR, max_length=65535)
    schema.add_field("category", DataType.VARCHAR, max_length=256)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dimension)
    index = client.prepare_index_params()
    index.add_index(field_name="embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    client.load_collection(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--model-dir", default="models/all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--checkpoint", default=None, help="default: <csv>.checkpoint.json")
    args = parser.parse_args()
    checkpoint = args.checkpoint or args.csv + ".checkpoint.json"

    frame = pd.read_csv(args.csv, dtype=str, keep_default_na=False)
    model = Model(args.model_dir, args.threads)
    client = MilvusClient(uri=args.uri)
    create_collection(client, args.collection, 384)
    done = json.load(open(checkpoint))["rows_done"] if os.path.exists(checkpoint) else 0

    with tqdm(total=len(frame), initial=done, unit="rows", disable=None) as progress:
        for start in range(done, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start:start + CHUNK_ROWS]
            vectors = model.encode(chunk["text"].tolist())
            rows = [
                {"id": row.id, "text": row.text, "category": row.category, "embedding": vector}
                for row, vector in zip(chunk.itertuples(index=False), vectors)
            ]
            client.upsert(args.collection, rows)
            with open(checkpoint, "w") as out:
                json.dump({"rows_done": start + len(chunk)}, out)
            progress.update(len(chunk))
    flush_started = time.time()
    client.flush(args.collection)
    ended = time.time()
    first = model.first_batch_at or ended
    rows = len(frame) - done
    print(json.dumps({
        "rows": rows,
        "seconds": round(ended - PROCESS_START, 3),
        "startup_seconds": round(first - PROCESS_START, 3),
        "rows_per_second_after_startup": round(rows / max(ended - first, 1e-9), 2),
        "flush_seconds": round(ended - flush_started, 3),
    }))


if __name__ == "__main__":
    main()
