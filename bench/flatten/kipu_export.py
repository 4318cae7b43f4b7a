"""kipu-python 0.0.2 doing the export job of `phigate kipu export patients_census
patient_vital_signs patient_diagnosis_history --format parquet` (bench/export.sh).

The way its README shows: the client's default auto-flattening turns every response into a
DataFrame; the census is paged by hand (kipu-python cannot page), then every patient's vital
signs and diagnosis history are fetched with at most BENCH_CONCURRENCY requests in flight (an
asyncio.Semaphore; kipu-python has no limit of its own), the frames are concatenated per
endpoint and written with DataFrame.to_parquet. Prints one JSON line; prints no record.
"""
import asyncio
import json
import os
import sys
import time

import pandas as pd
from kipu import KipuClient


def strip(df, key):
    # The dict path flattens the whole response: keep the record columns, drop pagination_*.
    cols = [c for c in df.columns if c.startswith(key + "_")]
    return df[cols] if cols else df.iloc[0:0]


async def pages(client, sem, call, key, per, *ids):
    frames = []
    page = 1
    while True:
        async with sem:
            df = await call(*ids, params={"page": page, "per": per})
        records = strip(df, key)
        frames.append(records)
        # Rows are not records (arrays inside a record explode into rows), so page by the
        # pagination block that the flattened response repeats on every row.
        if len(records) == 0 or "pagination_total_pages" not in df.columns:
            return frames
        if int(df["pagination_current_page"].iloc[0]) >= int(df["pagination_total_pages"].iloc[0]):
            return frames
        page += 1


async def main():
    out = sys.argv[1]
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
    per = int(os.environ.get("BENCH_PER", "100"))
    sem = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    rows = {}
    async with KipuClient(os.environ["KIPU_ACCESS_ID"], os.environ["KIPU_SECRET_KEY"],
                          os.environ["KIPU_APP_ID"], base_url=os.environ["KIPU_BASE_URL"],
                          version=int(os.environ.get("KIPU_API_VERSION", "3"))) as client:
        census = pd.concat(await pages(client, sem, client.get_patients_census, "patients", per),
                           ignore_index=True)
        census.to_parquet(os.path.join(out, "patients_census.parquet"))
        rows["patients_census"] = len(census)
        ids = list(dict.fromkeys(census["patients_casefile_id"]))
        for name, call, key in [
            ("patient_vital_signs", client.get_patient_vital_signs, "vital_signs"),
            ("patient_diagnosis_history", client.get_patient_diagnosis_history, "diagnosis_history"),
        ]:
            results = await asyncio.gather(*(pages(client, sem, call, key, per, pid) for pid in ids))
            df = pd.concat([f for frames in results for f in frames], ignore_index=True)
            df.to_parquet(os.path.join(out, name + ".parquet"))
            rows[name] = len(df)
    print(json.dumps({"rows": rows, "seconds": round(time.monotonic() - started, 3)}))


if __name__ == "__main__":
    asyncio.run(main())
