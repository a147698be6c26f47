#!/usr/bin/env python3
"""Anchor for smart_bench: the same exact kNN (k=16, cosine) done by
scikit-learn brute force, over the very vectors llmroute's index searches.

    smart_anchor.py check DIR
    smart_anchor.py time DIR N_QUERIES N_SKLEARN

DIR holds what `smart_bench --export` writes (see smart_bench.c): every
record's tfidf-v1 vector as the index holds it, each query's vector as the
search gets it, and the k neighbours llmroute's search returned.

check: runs NearestNeighbors(metric="cosine", algorithm="brute") over all
queries and compares each query's k neighbours with llmroute's. They must
be the same documents, except where the similarities tie at the k-th
(within TOL, float32 sums in different orders); llmroute's similarities
must match the ones recomputed here in float64. Prints the agreement and
exits with status 1 on any disagreement.

time: one round of the timing (smart_bench.sh alternates these with runs
of the C side): each query searched alone, the vector given, as one
routing decision needs it, by scipy (one sparse product against the
transposed matrix, then a partial selection of the top k, ties by lower
record number, as llmroute ranks) over the first N_QUERIES queries, and by
scikit-learn's NearestNeighbors over the first N_SKLEARN. Prints the p50 of
each in microseconds and the number of queries timed."""
import sys
import time

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.neighbors import NearestNeighbors

TOL = 1e-5


def load(d):
    with open(f"{d}/vec_meta.txt", encoding="ascii") as f:
        nd, nq, dim, k = map(int, f.read().split())

    def csr(prefix, rows):
        ptr = np.fromfile(f"{d}/{prefix}_indptr.u64", dtype="<u8").astype(np.int64)
        ind = np.fromfile(f"{d}/{prefix}_indices.u32", dtype="<u4").astype(np.int32)
        val = np.fromfile(f"{d}/{prefix}_data.f32", dtype="<f4")
        assert len(ptr) == rows + 1 and len(ind) == ptr[-1] == len(val)
        m = csr_matrix((val, ind, ptr), shape=(rows, dim))
        m.sort_indices()
        return m

    x = csr("docs", nd)
    q = csr("q", nq)
    kdoc = np.fromfile(f"{d}/knn_doc.u32", dtype="<u4").astype(np.int64).reshape(nq, k)
    ksim = np.fromfile(f"{d}/knn_sim.f32", dtype="<f4").reshape(nq, k)
    return x, q, kdoc, ksim, k


def check(d):
    x, q, kdoc, ksim, k = load(d)
    print(f"anchor vectors: {x.shape[0]} records, {q.shape[0]} queries, {x.shape[1]} "
          f"hashed features (tfidf-v1), {x.nnz} non-zeros in the records, read from "
          f"llmroute's index")
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x)
    xt64 = x.T.astype(np.float64).tocsr()
    same = tied = 0
    bad = []
    worst_sim = 0.0
    for i in range(q.shape[0]):
        if i % 100 == 0:  # in slices, to bound the memory of the dense results
            part = q[i:i + 100]
            _, sk_idx = nn.kneighbors(part)
            exact = (part.astype(np.float64) @ xt64).toarray()
        row = exact[i % 100]
        ours, theirs = kdoc[i], sk_idx[i % 100]
        worst_sim = max(worst_sim, float(np.abs(row[ours] - ksim[i]).max()))
        # the true k-th similarity, in float64
        kth = np.partition(-row, k - 1)[k - 1] * -1.0
        ok = bool(np.all(row[ours] >= kth - TOL)) and len(set(ours.tolist())) == k
        diff = set(ours.tolist()) ^ set(theirs.tolist())
        if not ok or any(abs(row[j] - kth) > TOL for j in diff):
            bad.append(i)
        elif diff:
            tied += 1
        else:
            same += 1
    n = q.shape[0]
    print(f"neighbours vs scikit-learn NearestNeighbors(cosine, brute): {same} of {n} "
          f"queries identical, {tied} differing only among ties at the {k}-th similarity "
          f"(within {TOL:g}), {len(bad)} disagree; llmroute's similarities within "
          f"{worst_sim:.2g} of the float64 ones")
    if bad or worst_sim > TOL:
        print(f"ANCHOR DISAGREES with llmroute on queries {bad[:10]}", file=sys.stderr)
        sys.exit(1)


def time_round(d, n_sp, n_sk):
    x, q, _, _, k = load(d)
    n_sp, n_sk = min(n_sp, q.shape[0]), min(n_sk, q.shape[0])
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x)
    xt = x.T.tocsr()
    rows = [q.getrow(i) for i in range(max(n_sp, n_sk))]
    # warm-up
    nn.kneighbors(rows[0])
    (rows[0] @ xt).toarray()
    lat = []
    for v in rows[:n_sk]:
        a = time.perf_counter()
        nn.kneighbors(v)
        lat.append(time.perf_counter() - a)
    sk = float(np.median(lat))
    lat = []
    for v in rows[:n_sp]:
        a = time.perf_counter()
        sims = (v @ xt).toarray().ravel()
        top = np.argpartition(-sims, k)[:k]
        top = top[np.lexsort((top, -sims[top]))]
        lat.append(time.perf_counter() - a)
    sp = float(np.median(lat))
    print(f"SP_P50_US={sp * 1e6:.2f}")
    print(f"SP_QUERIES={n_sp}")
    print(f"SK_P50_US={sk * 1e6:.2f}")
    print(f"SK_QUERIES={n_sk}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "time":
        time_round(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
