"""Benchmark workload for kipu-python 0.0.2 (bench/kipu_fetch.sh).

Same work as crates/kipu/examples/fetch_census_vitals.rs: the whole census, then every page of
every patient's vital signs, with at most BENCH_CONCURRENCY requests in flight (an
asyncio.Semaphore, since kipu-python has no limit of its own). kipu-python has no pagination,
so pages are requested by hand until a short page. flatten=False: raw JSON, no pandas work.
Prints one JSON line; prints no record.
"""

import asyncio
import json
import os
import time

from kipu import KipuClient


async def fetch_all(client, sem, call, key, per, *ids):
    """Every record of a list endpoint, paging manually (kipu-python cannot)."""
    records = 0
    page = 1
    while True:
        async with sem:
            body = await call(*ids, params={"page": page, "per": per}, flatten=False)
        items = body.get(key, [])
        records += len(items)
        pagination = body.get("pagination") or {}
        total_pages = int(pagination.get("total_pages") or 0)
        if not items or len(items) < per or (total_pages and page >= total_pages):
            return records, body if page == 1 else None
        page += 1


async def main():
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
    per = int(os.environ.get("BENCH_PER", "100"))
    version = int(os.environ.get("KIPU_API_VERSION", "3"))
    sem = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    async with KipuClient(
        os.environ["KIPU_ACCESS_ID"],
        os.environ["KIPU_SECRET_KEY"],
        os.environ["KIPU_APP_ID"],
        base_url=os.environ["KIPU_BASE_URL"],
        version=version,
    ) as client:
        patient_ids = []
        page = 1
        while True:
            async with sem:
                body = await client.get_patients_census(
                    params={"page": page, "per": per}, flatten=False
                )
            items = body.get("patients", [])
            patient_ids.extend(p["casefile_id"] for p in items)
            if not items or len(items) < per:
                break
            page += 1

        async def vitals(pid):
            n, _ = await fetch_all(
                client, sem, client.get_patient_vital_signs, "vital_signs", per, pid
            )
            return n

        counts = await asyncio.gather(*(vitals(pid) for pid in patient_ids))
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "client": "kipu-python",
                "patients": len(patient_ids),
                "records": len(patient_ids) + sum(counts),
                "seconds": round(seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
