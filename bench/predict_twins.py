#!/usr/bin/env python3
"""The default predictor with and without the twin term (src/lib/twins.h),
leave-one-out on the train split of the development data.

    predict_twins.py DATA PRICES [--seed N] [--sims S,S,...] [--shrink M,M,...]

DATA is the AIOS smart-routing format with a "split" field, PRICES the
per-model prices (predict_eval's format). Needs numpy, scipy and
scikit-learn.

The default form is predict_lsa.py's re-making of predict.c (the built-in
vectors, the groups by its k-means with --seed, k = 16, the tuned
constants). Each train record is predicted from the others; then, when its
nearest other record is at cosine >= S (its twin), each model's prediction
moves by beta x (the twin's correctness - mean), beta and mean fitted over
the store's twin pairs (each record with its nearest other one at >= S)
less the pairs the record is in, and beta shrunk by pairs / (pairs + M).
Printed for each S and M against the form without the term: Brier (and the
paired z of its gain), and the budget form's decisions on train as
predict_lsa.py makes them: the mean routed success over the 11 single
models' real costs, and at half of GPT-4's (paired z over records).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from predict_compare import budget_assign, load, options  # noqa: E402
from predict_lsa import Tfidf, kmeans, predict, topk  # noqa: E402


def main():
    opt, args = options({"--seed": "0", "--sims": "0.6,0.7,0.8,0.85,0.9,0.93",
                         "--shrink": "0,10"}, __doc__)
    seed = int(opt["--seed"])
    sims = [float(x) for x in opt["--sims"].split(",")]
    shrinks = [float(x) for x in opt["--shrink"].split(",")]

    models, pin, pout, spl = load(args[0], args[1])
    tr = spl["train"]
    ntr = len(tr["text"])
    c = tr["c"]
    o = tr["real_cost"] - tr["tokens"][:, None] * pin
    o = np.divide(o, pout, out=np.zeros_like(o), where=pout > 0)
    tf = Tfidf(tr["text"])
    x = tf.vectors(tf.counts)
    s = (x @ x.T).toarray()
    np.fill_diagonal(s, -np.inf)
    groups = np.asarray(x @ kmeans(x, min(ntr // 128, 64), cut=256, seed=seed + 1).T).argmax(1)
    idx = np.arange(ntr)
    nb = topk(s)
    q, out = predict(nb, groups, groups[nb], c, o, self_idx=idx)

    gpt4 = next(j for j, m in enumerate(models) if m.startswith("gpt-4"))
    singles = tr["real_cost"].sum(0)
    cost = tr["tokens"][:, None] * pin + out * pout

    def decide(qq):
        per = [c[idx, budget_assign(qq, cost, b)] for b in singles]
        return np.mean(per, axis=0), c[idx, budget_assign(qq, cost, singles[gpt4] / 2)]

    def z(d):
        return d.mean() / (d.std() / np.sqrt(len(d))) if d.std() > 0 else 0.0

    base_d, base_h = decide(q)
    base_b = ((q - c) ** 2).sum(1)
    print("groups seed %d; without the term: Brier %.5f, decisions %.5f, at half of GPT-4's "
          "cost %.4f" % (seed, ((q - c) ** 2).mean(), base_d.mean(), base_h.mean()))
    print("%5s %6s %5s %8s %6s %8s %6s %8s %6s" % ("sim", "shrink", "pairs", "Brier", "z",
                                                   "decide", "z", "half-g4", "z"))
    twin, tsim = s.argmax(1), s.max(1)
    for sim in sims:
        has = np.where(tsim >= sim)[0]
        a_all, b_all = c[has], c[twin[has]]
        for m0 in shrinks:
            qq = q.copy()
            for i in has:
                keep = (has != i) & (twin[has] != i)
                a, b = a_all[keep], b_all[keep]
                n = keep.sum()
                if n == 0:
                    continue
                mb = b.mean(0)
                cov = ((a - a.mean(0)) * (b - mb)).sum(0)
                var = ((b - mb) ** 2).sum(0)
                beta = np.divide(cov, var, out=np.zeros_like(cov), where=var > 1e-9 * n)
                qq[i] = np.clip(q[i] + beta * n / (n + m0) * (c[twin[i]] - mb), 0.0, 1.0)
            d, h = decide(qq)
            print("%5.2f %6g %5d %8.5f %6.2f %8.5f %6.2f %8.4f %6.2f" % (
                sim, m0, len(has), ((qq - c) ** 2).mean(), z(base_b - ((qq - c) ** 2).sum(1)),
                d.mean(), z(d - base_d), h.mean(), z(h - base_h)), flush=True)


if __name__ == "__main__":
    main()
