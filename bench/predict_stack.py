#!/usr/bin/env python3
"""A predictor stacked on the default form's parts, on the development data.

    predict_stack.py DATA PRICES [--groups FILE] [--seed N] [--split N] [--c C[,C...]]

DATA and PRICES as for predict_lsa.py, whose re-made default form (the
built-in TF-IDF neighbours, k = 16, and the groups) this script reads; it
needs numpy, scipy and scikit-learn. Train split only.

The default form reads each model's outcomes alone: model m's prediction is
its neighbours' mean shrunk toward its groups' record. The neighbours'
outcomes of the other models say how hard the query is too (the additive
form of predict.c's comment reads them as one level). Here one logistic
regression per model learns how to weigh them:

  cal        logit(q_m) alone (Platt scaling of the default form);
  lvl        logit(q_m) and the neighbours' mean lead over their groups'
             record, averaged over the models;
  full       logit(q_m), the 11 models' neighbour means and the 11 models'
             group records;
  fullL      the same with the means and records as logits (means mapped
             to [0.05, 0.95] first).

The parts are not read leave-one-out. A record left out of its group's
totals lowers that group's record by its own outcome over the group's size,
so among the records of one group a lower record means a correct answer; a
regression given the 11 records finds the group and reads the outcome off
them (on the development data that made Brier 0.189 against 0.194, all of
it this leak). Instead the train records are cut into quarters, and each
quarter in turn is predicted with a store of two others and a regression
fitted on the fourth, whose parts come from the same store: no record's
outcome is in its own parts, nor in those the regression was fitted on.
The default form is scored on the same stores, so the comparison is paired.
L2 strength 1 / C for each C given (1, 10, 100 by default). Output lengths
stay the default form's. Scored as predict_lsa.py scores: Brier, the budget
form's mean routed success at each single model's real cost on train and at
half of GPT-4's, each with its paired z against the default form.

--groups FILE: the store's groups of the train records (see predict_lsa.py);
else k-means groups from --seed N (0). --split N: the quarters' seed (0).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from predict_compare import budget_assign, load, options  # noqa: E402
import predict_lsa as lsa  # noqa: E402


def logit(p):
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def main():
    opt, args = options({"--groups": None, "--seed": "0", "--split": "0", "--c": "1,10,100"},
                        __doc__)
    from sklearn.linear_model import LogisticRegression

    seed = int(opt["--seed"])
    models, pin, pout, spl = load(args[0], args[1])
    tr = spl["train"]
    n = len(tr["text"])
    c = tr["c"]
    if not np.all((c == 0) | (c == 1)):
        sys.exit("predict_stack.py: correctness must be 0 or 1 for the regressions")
    o = tr["real_cost"] - tr["tokens"][:, None] * pin
    o = np.divide(o, pout, out=np.zeros_like(o), where=pout > 0)

    tf = lsa.Tfidf(tr["text"])
    x = tf.vectors(tf.counts)
    s = (x @ x.T).toarray()
    if opt["--groups"]:
        g = np.loadtxt(opt["--groups"], dtype=np.int64)
    else:
        g = np.asarray(x @ lsa.kmeans(x, min(n // 128, 64), cut=256, seed=seed + 1).T).argmax(1)

    def parts(rows, store):
        """The default form's prediction and parts for rows, from store."""
        near = np.argpartition(-s[np.ix_(rows, store)], lsa.K, axis=1)[:, :lsa.K]
        nb = store[near]
        q, olen = lsa.predict(near, g[store], g[nb], c[store], o[store])
        nbm = c[nb].mean(1)
        prior = (q * (lsa.K + lsa.M_Q) - c[nb].sum(1)) / lsa.M_Q  # the groups' record
        return q, olen, nbm, prior

    forms = {
        "cal": lambda m, q, nbm, prior: logit(q[:, m:m + 1]),
        "lvl": lambda m, q, nbm, prior: np.hstack(
            [logit(q[:, m:m + 1]), (nbm - prior).mean(1, keepdims=True)]),
        "full": lambda m, q, nbm, prior: np.hstack([logit(q[:, m:m + 1]), nbm, prior]),
        "fullL": lambda m, q, nbm, prior: np.hstack(
            [logit(q[:, m:m + 1]), logit(nbm * 0.9 + 0.05), logit(prior)]),
    }
    strengths = [float(v) for v in opt["--c"].split(",")]
    quarter = np.random.RandomState(100 + int(opt["--split"])).permutation(n) % 4
    base_q, base_o = np.zeros_like(c), np.zeros_like(c)
    out = {(f, C): np.zeros_like(c) for C in strengths for f in forms}
    for e in range(4):
        held = np.where(quarter == e)[0]
        fit = np.where(quarter == (e + 1) % 4)[0]
        store = np.where((quarter != e) & (quarter != (e + 1) % 4))[0]
        q_h, o_h, nbm_h, prior_h = parts(held, store)
        q_f, _, nbm_f, prior_f = parts(fit, store)
        base_q[held], base_o[held] = q_h, o_h
        for (form, strength), pred in out.items():
            for m in range(c.shape[1]):
                y = c[fit, m]
                if y.min() == y.max():
                    pred[held, m] = y.mean()
                    continue
                lr = LogisticRegression(C=strength, max_iter=3000)
                lr.fit(forms[form](m, q_f, nbm_f, prior_f), y)
                pred[held, m] = lr.predict_proba(forms[form](m, q_h, nbm_h, prior_h))[:, 1]

    idx = np.arange(n)
    gpt4 = next(j for j, m in enumerate(models) if m.startswith("gpt-4"))
    singles = tr["real_cost"].sum(0)
    cost = tr["tokens"][:, None] * pin + base_o * pout

    def decide(pred):
        per = [c[idx, budget_assign(pred, cost, b)] for b in singles]
        half = c[idx, budget_assign(pred, cost, singles[gpt4] / 2)]
        return np.mean(per, axis=0), half

    def z(d):
        return d.mean() / (d.std() / np.sqrt(len(d))) if d.std() > 0 else 0.0

    base_d, base_h = decide(base_q)
    base_b = ((base_q - c) ** 2).sum(1)
    print("%d train records, quarters from split %s, groups %s" % (
        n, opt["--split"], opt["--groups"] or "by k-means, seed %d" % seed))
    print("%-14s %8s %6s %8s %6s %8s %6s" % ("variant", "Brier", "z", "decide", "z",
                                             "half-g4", "z"))
    print("%-14s %8.5f %6s %8.5f %6s %8.4f %6s" % ("default", base_b.mean() / c.shape[1], "",
                                                   base_d.mean(), "", base_h.mean(), ""))
    for (form, strength), pred in out.items():
        d, h = decide(pred)
        b = ((pred - c) ** 2).sum(1)
        print("%-14s %8.5f %6.2f %8.5f %6.2f %8.4f %6.2f" % (
            "%s C=%g" % (form, strength), b.mean() / c.shape[1], z(base_b - b),
            d.mean(), z(d - base_d), h.mean(), z(h - base_h)), flush=True)


if __name__ == "__main__":
    main()
