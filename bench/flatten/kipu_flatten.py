"""kipu-python 0.0.2's flattener on a JSON-lines file: read the records, run
JsonFlattener().flatten_json_df (its only table path), write the DataFrame with to_parquet.

usage: python kipu_flatten.py IN.jsonl OUT.parquet
Prints one JSON line: records, rows, columns and the seconds spent in each stage.
"""
import asyncio
import json
import sys
import time

from kipu import JsonFlattener


def main():
    t0 = time.monotonic()
    with open(sys.argv[1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    t1 = time.monotonic()
    df = asyncio.run(JsonFlattener().flatten_json_df(records))
    t2 = time.monotonic()
    df.to_parquet(sys.argv[2])
    t3 = time.monotonic()
    print(json.dumps({"records": len(records), "rows": len(df), "columns": len(df.columns),
                      "read_s": round(t1 - t0, 3), "flatten_s": round(t2 - t1, 3),
                      "write_s": round(t3 - t2, 3)}))


if __name__ == "__main__":
    main()
