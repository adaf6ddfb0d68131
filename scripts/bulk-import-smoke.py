import json, os, sys, time, random
from pymilvus import connections, utility, Collection, FieldSchema, CollectionSchema, DataType
uri = sys.argv[1]; data_dir = sys.argv[2]
connections.connect(uri=uri)
name = f"bulk_smoke_{int(time.time())}"
schema = CollectionSchema([FieldSchema("id", DataType.VARCHAR, max_length=64, is_primary=True), FieldSchema("vec", DataType.FLOAT_VECTOR, dim=8)])
c = Collection(name, schema)
stage = os.path.join(data_dir, "vecdrop-staging", name); os.makedirs(stage, exist_ok=True)
rows = [{"id": f"k{i}", "vec": [random.random() for _ in range(8)]} for i in range(1000)]
jp = os.path.join(stage, "rows.json"); json.dump({"rows": rows}, open(jp, "w"))
results = {}
def run(label, path):
    try:
        task = utility.do_bulk_insert(collection_name=name, files=[path])
    except Exception as e:
        results[label] = f"submit failed: {e}"; return
    for _ in range(120):
        st = utility.get_bulk_insert_state(task)
        if st.state_name in ("Completed", "Failed", "Persisted") and st.state_name != "Persisted" or st.state_name == "Completed":
            break
        time.sleep(0.5)
    results[label] = f"task {task}: {st.state_name} rows={st.row_count} reason={st.failed_reason!r}"
run("json-absolute", jp)
run("json-relative", os.path.relpath(jp, os.path.join(data_dir)))
try:
    import pyarrow as pa, pyarrow.parquet as pq
    pp = os.path.join(stage, "rows.parquet")
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(1000)], "vec": pa.array([[random.random() for _ in range(8)] for _ in range(1000)], type=pa.list_(pa.float32()))}), pp)
    run("parquet-absolute", pp)
except Exception as e:
    results["parquet"] = f"skipped: {e}"
c.flush()
results["count"] = c.num_entities
for k, v in results.items(): print(k, "->", v)
utility.drop_collection(name)
