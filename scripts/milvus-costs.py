#!/usr/bin/env python3
"""What single Milvus operations cost the server, measured with pymilvus against a local
`milvus` process (its CPU read from /proc): the figures ARCHITECTURE.md cites for bounded
lookups and one-flush-at-a-time.

    .venv/bin/python scripts/milvus-costs.py http://127.0.0.1:PORT

Prints, per pattern, wall-clock seconds and the `milvus` process's CPU seconds:
- 100 queries of 10 keys, strongly consistent and bounded (an unchanged-row lookup per small file);
- 100 upserts of 10 rows (a small file's write);
- the small-files pattern (100 x [bounded query + 10-row upsert]) with 4 and with 12 flushes, and
  one 1,000-row file with one flush (CPU counted until 5 s after the last call);
- how long pymilvus's `flush` of a 3,000-row collection takes;
- how long a flush takes 0-4 s after the last write: Milvus 2.3 completes a flush only once the
  segment assignments of the last writes expire (`dataCoord.segment.assignmentExpiration`, 2 s),
  so a file's closing flush costs ~2 s whatever its size or the host's speed (pymilvus polls the
  flush state every 0.5 s; vecdrop every 0.1 s).
"""
import os
import random
import sys
import time

from pymilvus import DataType, MilvusClient

client = MilvusClient(uri=sys.argv[1])
pid = int(os.popen("pgrep -x milvus").read().split()[0])


def milvus_cpu():
    fields = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collection(tag):
    name = f"costs_{os.getpid()}_{tag}"
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("h", DataType.INT64)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=384)
    index = client.prepare_index_params()
    index.add_index(field_name="v", index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    client.load_collection(name)
    time.sleep(3)  # let the new collection's start-up work settle
    return name


def rows(count, first):
    return [{"id": f"k{first + i}", "h": i, "v": [random.random() for _ in range(384)]} for i in range(count)]


def lookup(name, first, count, level):
    keys = [f"k{first + i}" for i in range(count)]
    client.query(name, filter=f"id in {keys}", output_fields=["h"], consistency_level=level)


def measure(label, work, settle=0.0):
    time.sleep(2)
    cpu, started = milvus_cpu(), time.time()
    work()
    wall = time.time() - started
    time.sleep(settle)
    print(f"{label}: {wall:.2f} s wall, milvus {milvus_cpu() - cpu:.2f} CPU s")


name = collection("ops")
measure("100 upserts of 10 rows", lambda: [client.upsert(name, rows(10, i * 10)) for i in range(100)])
measure("100 strong queries of 10 keys", lambda: [lookup(name, i * 10, 10, "Strong") for i in range(100)])
measure("100 bounded queries of 10 keys", lambda: [lookup(name, i * 10, 10, "Bounded") for i in range(100)])
client.drop_collection(name)


def small_files(per_file, flushes):
    name = collection(f"{per_file}_{flushes}")
    files = 1000 // per_file

    def work():
        for i in range(files):
            lookup(name, i * per_file, per_file, "Bounded")
            client.upsert(name, rows(per_file, i * per_file))
            if (i + 1) % (files // flushes) == 0:
                client.flush(name)

    measure(f"1,000 rows as {files} files, {flushes} flushes", work, settle=5.0)
    client.drop_collection(name)


small_files(1000, 1)
small_files(10, 4)
small_files(10, 12)

name = collection("flush")
for i in range(6):
    client.upsert(name, rows(500, i * 500))
started = time.time()
client.flush(name)
print(f"pymilvus flush of 3,000 rows: {time.time() - started:.2f} s")
client.drop_collection(name)

name = collection("flush_after")
batch = 0
for wait in [0, 1, 2, 3, 4]:
    seconds = []
    for _ in range(3):
        client.upsert(name, rows(1000, batch * 1000))
        batch += 1
        time.sleep(wait)
        started = time.time()
        client.flush(name)
        seconds.append(time.time() - started)
    print(f"flush {wait} s after the last write: {min(seconds):.2f}-{max(seconds):.2f} s (3 flushes)")
client.drop_collection(name)
