"""Writes N census-like nested patient records as JSON lines (deterministic; synthetic).

Shape (kipu-shapes.md, patient): ~25 scalar fields, a nested `address` object (with a nested
`geo` object), an `insurances` array of 1 or 2 objects, a `flags` array of 0 to 2 strings.
In the wide layout each record becomes 1 to 4 rows (insurances x flags, kipu-python's
cartesian rule).

usage: python gen_records.py N OUT.jsonl
"""
import json
import random
import sys

FIRST = ["Ann", "Bob", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
LAST = ["Smith", "Jones", "Garcia", "Chen", "Okafor", "Novak", "Silva", "Kaur"]
PROGRAMS = ["Detox", "Residential", "PHP", "IOP", "Outpatient"]
PAYORS = ["Aetna", "Cigna", "BCBS", "UnitedHealthcare", "Medicaid", "Self-pay"]


def record(rng, i):
    insurances = [
        {"id": i * 4 + k, "payor_name": rng.choice(PAYORS), "policy_no": f"P{rng.randrange(10**8):08d}",
         "priority": "primary" if k == 0 else "secondary", "start_date": "2024-01-01", "end_date": None}
        for k in range(rng.choice([1, 1, 2]))
    ]
    return {
        "casefile_id": f"{i + 1}:{rng.getrandbits(128):032x}",
        "patient_master_id": f"{rng.getrandbits(128):032x}",
        "first_name": rng.choice(FIRST),
        "middle_name": None,
        "last_name": rng.choice(LAST),
        "dob": f"19{rng.randrange(40, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "gender": rng.choice(["F", "M", "X"]),
        "mr_number": f"MR{rng.randrange(10**7):07d}",
        "phone": f"555-{rng.randrange(10**4):04d}",
        "email": f"p{i}@example.com",
        "admission_date": "2024-03-01",
        "discharge_date": None if rng.random() < 0.5 else "2024-04-01",
        "program": rng.choice(PROGRAMS),
        "level_of_care": rng.choice(["1", "2.1", "3.5", "3.7", "4"]),
        "location_id": rng.randrange(1, 6),
        "location_name": "Main campus",
        "bed": rng.randrange(1, 200),
        "weight_kg": round(rng.uniform(45, 140), 1),
        "is_active": rng.random() < 0.8,
        "created_at": "2024-03-01T14:05:00-05:00",
        "updated_at": "2024-03-02T09:00:00-05:00",
        "address": {"street": f"{rng.randrange(1, 9999)} Main St", "city": "Springfield", "state": "IL",
                    "zip": f"{rng.randrange(10000, 99999)}",
                    "geo": {"lat": round(rng.uniform(30, 45), 4), "lng": round(rng.uniform(-120, -70), 4)}},
        "insurances": insurances,
        "flags": rng.sample(["fall-risk", "allergy", "vip"], rng.choice([0, 1, 1, 2])),
    }


def main():
    n = int(sys.argv[1])
    rng = random.Random(42)
    with open(sys.argv[2], "w") as out:
        for i in range(n):
            out.write(json.dumps(record(rng, i), separators=(",", ":")))
            out.write("\n")


if __name__ == "__main__":
    main()
