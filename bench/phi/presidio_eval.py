"""Runs Microsoft Presidio's analyzer over a corpus written by `phigate phi eval --dump` and
prints throughput and overall precision / recall / F2 as one JSON line.

Scoring is the one phigate's `phi bench` uses: relaxed overlap, kinds ignored (a gold span is
found if any predicted span overlaps it; a predicted span is correct if it overlaps any gold
span). Presidio runs with its defaults (all default recognizers, score threshold 0).

--model NAME loads that installed spaCy pipeline; --model none uses a blank English tokenizer,
so only Presidio's pattern (regex + checksum + context) recognizers can fire.
"""

import argparse
import json
import sys
import time


def build_analyzer(model):
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    if model == "none":
        import spacy

        class BlankSpacyEngine(SpacyNlpEngine):
            def load(self):
                self.nlp = {"en": spacy.blank("en")}

        engine = BlankSpacyEngine(models=[{"lang_code": "en", "model_name": "blank"}])
        engine.load()
    else:
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
        engine.load()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--model", default="none")
    args = parser.parse_args()

    notes = [json.loads(line) for line in open(args.input, encoding="utf-8") if line.strip()]
    analyzer = build_analyzer(args.model)
    analyzer.analyze(text="warm up 415-555-0123", language="en")

    predictions = []
    started = time.perf_counter()
    for note in notes:
        predictions.append(analyzer.analyze(text=note["text"], language="en"))
    seconds = time.perf_counter() - started

    gold = found = predicted = correct = 0
    size = 0
    for note, preds in zip(notes, predictions):
        # The corpus holds UTF-8 byte offsets; Presidio reports character offsets.
        raw = note["text"].encode("utf-8")
        size += len(raw)
        to_char = lambda b: len(raw[:b].decode("utf-8"))
        spans = [(to_char(s["start"]), to_char(s["end"])) for s in note["spans"]]
        pred = [(r.start, r.end) for r in preds]
        for gs, ge in spans:
            gold += 1
            if any(ps < ge and gs < pe for ps, pe in pred):
                found += 1
        for ps, pe in pred:
            predicted += 1
            if any(ps < ge and gs < pe for gs, ge in spans):
                correct += 1
    precision = correct / predicted if predicted else 1.0
    recall = found / gold if gold else 1.0
    f2 = 5 * precision * recall / (4 * precision + recall) if precision + recall else 0.0
    print(json.dumps({
        "tool": "presidio",
        "model": args.model,
        "notes": len(notes),
        "bytes": size,
        "seconds": seconds,
        "mb_per_s": size / 1e6 / seconds,
        "overall": {"precision": precision, "recall": recall, "f2": f2},
    }))


if __name__ == "__main__":
    sys.exit(main())
