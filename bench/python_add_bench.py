"""The cost of QueryStore.add_data as records come one at a time, against
the same records added in one call (the anchor), in one run.

At each store size (1,000 and 10,000 records of synthetic history, the
built-in embedder, in memory) a round builds two stores alike, then adds
the same new records (2,000 unless --adds says otherwise) to one of them
one add_data([record]) at a time and to the other in one add_data(records),
each then routing one query (QueryStore.predict), so that work an add
leaves to the next route is timed too; the rounds alternate which goes
first, so both see the same machine noise.
Printed: the medians of the rounds, the time per add, and their ratio
(one at a time / one call). An add that costs what its record needs keeps
the ratio near the per-call overhead whatever the store's size; one that
costs the size of the store makes it grow with the store.

Each round then checks that the two stores hold the same number of
records and give the same predictions (QueryStore.predict over 50 new
queries), so that a faster add that routed differently would be seen.

With --dense the stores are dense, opened with embed= a function that
hashes each word of a text into one of 64 places (quick, and the same on
every run), so that what is timed is the store's work, not an embedder's.

With --cap N both stores are opened with max_records=N (a cap on their
records, which must leave room for the adds at every size), so that the
adds into a capped store are what is timed.

    bench/python_add.sh [build-dir] [--adds N] [--rounds R] [--sizes 1000,10000] [--dense]
                        [--cap N]
"""
import argparse
import random
import statistics
import sys
import time
import zlib

import llmroute

MODELS = [{"name": n} for n in ("gpt-4o", "gpt-4o-mini", "qwen2.5:7b", "llama3.1:8b")]


def synth(n_records, seed):
    """n_records of history in AIOS's format: queries of words drawn mostly
    from one of 40 topics, each model right at its own rate."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(3000)]
    topics = [rng.sample(vocab, 60) for _ in range(40)]
    skill = {m["name"]: rng.uniform(0.3, 0.95) for m in MODELS}

    def text():
        t = rng.choice(topics)
        return " ".join(rng.choice(t) if rng.random() < 0.7 else rng.choice(vocab)
                        for _ in range(rng.randint(8, 40)))

    records = []
    for _ in range(n_records):
        q = text()
        outs = [{"model_name": m["name"], "correctness": float(rng.random() < skill[m["name"]]),
                 "output_token_length": float(rng.randint(20, 800))}
                for m in MODELS if rng.random() < 0.9] or [
                    {"model_name": MODELS[0]["name"], "correctness": 1.0,
                     "output_token_length": 100.0}]
        records.append({"query": q, "input_token_length": len(q) // 4, "outputs": outs})
    return records, [text() for _ in range(50)]


DIM = 64


def hashed(texts):
    """embed= of the dense stores: a hashed bag of words per text."""
    out = []
    for t in texts:
        v = [0.0] * DIM
        for w in t.split():
            h = zlib.crc32(w.encode("utf-8"))
            v[h % DIM] += 1.0 if (h >> 16) & 1 else -1.0
        if not any(v):
            v[0] = 1.0
        out.append(v)
    return out


def store_of(records, dense, cap):
    s = (llmroute.QueryStore(embed=hashed, embedder="bench-hash-64", max_records=cap) if dense
         else llmroute.QueryStore(None, max_records=cap))
    s.add_data(records)
    return s


def one_at_a_time(store, new, probe):
    t = time.perf_counter()
    for r in new:
        store.add_data([r])
    store.predict(probe, MODELS)
    return time.perf_counter() - t


def in_one_call(store, new, probe):
    t = time.perf_counter()
    store.add_data(new)
    store.predict(probe, MODELS)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adds", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--dense", action="store_true",
                    help="dense stores (embed= a hashed bag of words of 64 places)")
    ap.add_argument("--cap", type=int, default=0,
                    help="open the stores with max_records=CAP (0: no cap)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.cap < 0:
        ap.error("--cap %d: expected a record count, or 0 for no cap" % args.cap)
    if args.cap and args.cap < max(sizes) + args.adds:
        ap.error("--cap %d leaves no room for %d adds into a store of %d records: give "
                 "at least %d" % (args.cap, args.adds, max(sizes), max(sizes) + args.adds))
    kind = [k for k, on in (("dense store", args.dense),
                            ("max_records %d" % args.cap, args.cap)) if on]
    print("QueryStore.add_data%s: %d records one at a time vs in one call; median of %d rounds"
          % (" (%s)" % ", ".join(kind) if kind else "", args.adds, args.rounds))
    status = 0
    for size in sizes:
        records, probes = synth(size + args.adds, seed=size)
        base, new = records[:size], records[size:]
        singles, batches = [], []
        for r in range(args.rounds):
            a, b = store_of(base, args.dense, args.cap), store_of(base, args.dense, args.cap)
            if r % 2 == 0:
                singles.append(one_at_a_time(a, new, probes[0]))
                batches.append(in_one_call(b, new, probes[0]))
            else:
                batches.append(in_one_call(b, new, probes[0]))
                singles.append(one_at_a_time(a, new, probes[0]))
            same = (a.count() == b.count() == size + args.adds
                    and [list(map(list, x)) for x in a.predict(probes, MODELS)]
                    == [list(map(list, x)) for x in b.predict(probes, MODELS)])
            if not same:
                print("  store of %d, round %d: the two stores differ (records or predictions)"
                      % (size, r))
                status = 1
            a.close()
            b.close()
        ms, mb = statistics.median(singles), statistics.median(batches)
        print("store of %6s: one at a time %9.3f s (%8.3f ms an add)   one call %8.3f s   "
              "ratio %8.1fx" % ("{:,}".format(size), ms, 1000 * ms / args.adds, mb, ms / mb))
    return status


if __name__ == "__main__":
    sys.exit(main())
