#!/usr/bin/env python3
"""Anchor for smart_bench: the same exact kNN (k=16, cosine) by scikit-learn
brute force over sparse TF-IDF vectors of the same synthetic corpus.

    smart_anchor.py DIR [n_queries]

DIR holds corpus.txt and queries.txt written by smart_bench (one text per
line). Each query is timed alone, vectorising included, as one routing
decision would need it; prints the medians in microseconds of
scikit-learn's NearestNeighbors and of the same search done directly with a
scipy sparse product (the faster of the two is the anchor)."""
import sys
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.neighbors import NearestNeighbors


def main():
    d = sys.argv[1]
    nq = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    with open(f"{d}/corpus.txt", encoding="utf-8") as f:
        corpus = f.read().splitlines()
    with open(f"{d}/queries.txt", encoding="utf-8") as f:
        queries = f.read().splitlines()[:nq]
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    x = vec.fit_transform(corpus)
    nn = NearestNeighbors(n_neighbors=16, metric="cosine", algorithm="brute").fit(x)
    fit_s = time.perf_counter() - t0
    # 1. scikit-learn's brute-force NearestNeighbors, as asked for. It is
    #    slow on a matrix this wide, so it is timed on fewer queries.
    n_sk = min(len(queries), 30)
    nn.kneighbors(vec.transform([queries[0]]))
    lat = []
    for q in queries[:n_sk]:
        a = time.perf_counter()
        nn.kneighbors(vec.transform([q]))
        lat.append(time.perf_counter() - a)
    lat.sort()
    sk = lat[len(lat) // 2]
    # 2. The fast way in Python: one sparse product against the (already
    #    L2-normalised) rows, then a partial selection of the top 16.
    xt = x.T.tocsr()
    lat = []
    for q in queries:
        a = time.perf_counter()
        v = vec.transform([q])
        sims = (v @ xt).toarray().ravel()
        top = np.argpartition(-sims, 16)[:16]
        top = top[np.lexsort((top, -sims[top]))]
        lat.append(time.perf_counter() - a)
    lat.sort()
    sp = lat[len(lat) // 2]
    print(f"sklearn: {len(corpus)} docs, {x.shape[1]} features, {x.nnz} non-zeros; "
          f"fit {fit_s:.1f} s")
    print(f"sklearn NearestNeighbors(brute, cosine) per query: p50 {sk * 1e6:.1f} us "
          f"({n_sk} queries)")
    print(f"scipy sparse product + argpartition per query: p50 {sp * 1e6:.1f} us "
          f"({len(queries)} queries)")
    print(f"PY_P50_US={sp * 1e6:.2f}")
    print(f"SK_P50_US={sk * 1e6:.2f}")


if __name__ == "__main__":
    main()
