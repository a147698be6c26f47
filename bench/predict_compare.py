#!/usr/bin/env python3
"""Other predictors against the built-in ones, on the development data.

    predict_eval DATA PRICES --decide --dump /tmp/pred.tsv
    predict_compare.py DATA PRICES /tmp/pred.tsv

The dump holds predict_eval's predictions: train records leave-one-out
(each from the other train records) and test records from the whole train
split, for the default and aios modes. Beside them this script builds:

  lr         a trained predictor (ECCOS's training-based variant): one
             logistic regression per model over TF-IDF word 1-2 grams and
             character 3-5 grams (scikit-learn), train scored by 5-fold
             cross-validation, test by a fit on all of train;
  task       each task's mean correctness on train (the records' eval_name
             labels; train leave-one-out);
  default+X  a convex blend of the default mode with lr or task.

For each: Brier score on train and test, and the budget form's decisions
(maximise the sum of predicted quality within a budget of estimated cost,
with predicted output lengths from the default mode), scored with the real
outcomes at the budgets of each single model's real cost: the mean success
over those budgets, on train and test, and at half of GPT-4's cost. The
paired z compares each predictor's train decisions with the default's,
query by query; predictors are judged on train only. Then the bound of
routing by task alone (each task's real rates on the test split itself),
and how well the default mode ranks the queries within each task.
"""
import json
import sys

import numpy as np


def options(defaults, usage):
    """The command line's "--name value" options over defaults (a dict of
    strings or None) and its two other arguments, DATA and PRICES; exits
    with usage unless exactly two are left."""
    args, opt = sys.argv[1:], dict(defaults)
    for name in opt:
        if name in args:
            i = args.index(name)
            opt[name] = args[i + 1]
            del args[i:i + 2]
    if len(args) != 2:
        sys.exit(usage)
    return opt, args


def load(data_path, prices_path):
    data = json.load(open(data_path))
    prices = json.load(open(prices_path))
    models = sorted(prices)
    pin = np.array([prices[m]["input_price_per_mtok"] * 1e-6 for m in models])
    pout = np.array([prices[m]["output_price_per_mtok"] * 1e-6 for m in models])
    splits = {}
    for name in ("train", "test"):
        recs = [r for r in data if r.get("split") == name]
        c = np.zeros((len(recs), len(models)))
        o = np.zeros_like(c)
        for i, r in enumerate(recs):
            for out in r["outputs"]:
                j = models.index(out["model_name"])
                c[i, j] = out["correctness"]
                o[i, j] = out["output_token_length"]
        t = np.array([r["input_token_length"] for r in recs], float)
        splits[name] = {
            "text": [r["query"] for r in recs],
            "task": np.array([r.get("eval_name", "") for r in recs]),
            "c": c,
            "tokens": t,
            "real_cost": t[:, None] * pin + o * pout,
        }
    return models, pin, pout, splits


def load_dump(path, models, splits):
    q = {s: np.zeros_like(splits[s]["c"]) for s in splits}
    o = {s: np.zeros_like(splits[s]["c"]) for s in splits}
    for line in open(path).readlines()[1:]:
        s, i, m, qd, od, _, _ = line.rstrip("\n").split("\t")
        q[s][int(i), models.index(m)] = float(qd)
        o[s][int(i), models.index(m)] = float(od)
    return q, o


def budget_assign(q, cost, budget):
    """Maximise sum q within sum cost <= budget: the Lagrangian relaxation's
    assignment at the smallest feasible multiplier, then greedy upgrades by
    quality gained per dollar while the budget allows."""
    lo, hi = 0.0, 1e7
    for _ in range(100):
        lam = (lo + hi) / 2
        a = np.argmax(q - lam * cost, axis=1)
        if cost[np.arange(len(q)), a].sum() > budget:
            lo = lam
        else:
            hi = lam
    idx = np.arange(len(q))
    a = np.argmax(q - hi * cost, axis=1)
    spent = cost[idx, a].sum()
    while True:
        dq = q - q[idx, a][:, None]
        dc = cost - cost[idx, a][:, None]
        ok = (dq > 1e-12) & (dc <= budget - spent + 1e-15)
        if not ok.any():
            return a
        ratio = np.where(ok, dq / np.maximum(dc, 1e-12), -1.0)
        i, j = np.unravel_index(np.argmax(ratio), ratio.shape)
        spent += dc[i, j]
        a[i] = j


def lr_predict(train_text, train_c, other_text, c_reg=2.0):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    word = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    char = TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5), min_df=2,
                           max_features=50000)
    a = hstack([word.fit_transform(train_text), char.fit_transform(train_text)]).tocsr()
    b = hstack([word.transform(other_text), char.transform(other_text)]).tocsr()
    out = np.zeros((b.shape[0], train_c.shape[1]))
    for j in range(train_c.shape[1]):
        y = train_c[:, j]
        if y.min() == y.max():
            out[:, j] = y[0]
            continue
        m = LogisticRegression(C=c_reg, solver="liblinear")
        m.fit(a, y)
        out[:, j] = m.predict_proba(b)[:, 1]
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    models, pin, pout, sp = load(sys.argv[1], sys.argv[2])
    q, o = load_dump(sys.argv[3], models, sp)
    tr, te = sp["train"], sp["test"]

    from sklearn.model_selection import KFold

    lr_tr = np.zeros_like(tr["c"])
    for a, b in KFold(5, shuffle=True, random_state=0).split(tr["text"]):
        lr_tr[b] = lr_predict([tr["text"][i] for i in a], tr["c"][a],
                              [tr["text"][i] for i in b])
    lr_te = lr_predict(tr["text"], tr["c"], te["text"])

    task_tr = np.zeros_like(tr["c"])
    task_te = np.zeros_like(te["c"])
    for t in set(tr["task"]):
        s = tr["task"] == t
        tot = tr["c"][s].sum(0)
        task_tr[s] = (tot - tr["c"][s]) / max(s.sum() - 1, 1)
        task_te[te["task"] == t] = tot / s.sum()

    preds = {"default": (q["train"], q["test"]), "lr": (lr_tr, lr_te),
             "task": (task_tr, task_te)}
    for w in (0.25, 0.5, 0.75):
        preds["default+lr %.2f" % w] = (w * lr_tr + (1 - w) * q["train"],
                                        w * lr_te + (1 - w) * q["test"])
        preds["default+task %.2f" % w] = (w * task_tr + (1 - w) * q["train"],
                                          w * task_te + (1 - w) * q["test"])

    gpt4 = next(j for j, m in enumerate(models) if m.startswith("gpt-4"))

    def decisions(pred, split, oo):
        cost = split["tokens"][:, None] * pin + oo * pout
        idx = np.arange(len(pred))
        singles = split["real_cost"].sum(0)
        per_query = []
        for b in singles:
            per_query.append(split["c"][idx, budget_assign(pred, cost, b)])
        half = split["c"][idx, budget_assign(pred, cost, singles[gpt4] / 2)].mean()
        return np.mean(per_query, axis=0), half

    base, _ = decisions(q["train"], tr, o["train"])
    print("%-18s %8s %8s %8s %6s | %8s %8s %8s" % ("predictor", "Brier", "decide", "half-g4",
                                                   "z", "Brier", "decide", "half-g4"))
    print("%-18s %s | %s" % ("", "train (left out)".center(35), "test".center(26)))
    for name, (ptr, pte) in preds.items():
        dtr, htr = decisions(ptr, tr, o["train"])
        dte, hte = decisions(pte, te, o["test"])
        d = dtr - base
        z = d.mean() / (d.std() / np.sqrt(len(d))) if d.std() > 0 else 0.0
        print("%-18s %8.5f %8.5f %8.4f %6.2f | %8.5f %8.5f %8.4f" % (
            name, ((ptr - tr["c"]) ** 2).mean(), dtr.mean(), htr, z,
            ((pte - te["c"]) ** 2).mean(), dte.mean(), hte))

    # The bound of routing by task alone: each task's real mean correctness
    # on the test split itself (known to no router), with the default
    # mode's output lengths.
    bound = np.zeros_like(te["c"])
    for t in set(te["task"]):
        bound[te["task"] == t] = te["c"][te["task"] == t].mean(0)
    dte, hte = decisions(bound, te, o["test"])
    print("%-18s %35s | %8.5f %8.5f %8.4f" % ("task (test rates)", "(a bound, not a predictor)",
                                             ((bound - te["c"]) ** 2).mean(), dte.mean(), hte))

    # Does the default mode tell a task's queries apart? Rank correlation of
    # predicted and real correctness within each task, per model.
    from scipy.stats import spearmanr

    print("\nwithin each task, test split: Spearman of the default mode's predicted "
          "against real correctness, per model")
    for t in sorted(set(te["task"])):
        s = te["task"] == t
        rho = []
        for j in range(len(models)):
            if te["c"][s, j].std() > 0 and q["test"][s, j].std() > 0:
                rho.append(spearmanr(q["test"][s, j], te["c"][s, j])[0])
        if rho:
            print("  %-16s %4d queries: median %+.3f, from %+.3f to %+.3f over %d models" % (
                t, s.sum(), np.median(rho), min(rho), max(rho), len(rho)))


if __name__ == "__main__":
    main()
