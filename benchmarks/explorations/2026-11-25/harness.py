"""Exploration harness: 5-fold CV on train+val albums of the product split (test never looked at)."""
import numpy as np, time, sys
from coversearch.store import Store
from coversearch.classify.split import load_split
from coversearch.classify.dense import DenseGenre
from coversearch.classify.xgboost_clf import XGBoostGenre
from coversearch.classify.knn import KNNVote

s = Store.open("/work/main/benchmarks/results/covers5.duckdb", read_only=True)
ids = np.load("/tmp/exp2/ids.npy")
split = load_split(s)
G = s.genres_by_album(ids)
genres = [tuple(G[int(a)]) for a in ids]
side = np.full(len(ids), "", object)
for sd in ("train", "val", "test"):
    side[np.isin(ids, split.album_ids(sd))] = sd
s.close()
dev = np.flatnonzero(side != "test")
rng = np.random.default_rng(0)
fold = np.empty(len(ids), int); fold[dev] = rng.permutation(len(dev)) % 5

def expand(idx):
    r = [i for i in idx for _ in genres[i]]; lab = [x for i in idx for x in genres[i]]
    return np.array(r), np.array(lab)

def score(P, classes, idx):
    return float(np.mean([classes[p] in genres[i] for p, i in zip(P.argmax(1), idx)]))

def cv_proba(make, X, folds=range(5), Xtest_views=None, Xtrain_views=None):
    """Out-of-fold probabilities for dev albums. X: (n, d) or list of views (train on all views, average probas)."""
    views = X if isinstance(X, list) else [X]
    P = np.zeros((len(ids), 5))
    for f in folds:
        tr_idx = dev[fold[dev] != f]; te_idx = dev[fold[dev] == f]
        # inner val = a slice of tr for early stopping (fold f+1)
        va_idx = tr_idx[fold[tr_idx] == (f + 1) % 5]; fit_idx = tr_idx[fold[tr_idx] != (f + 1) % 5]
        r, y = expand(fit_idx); rv, yv = expand(va_idx)
        Xtr = np.vstack([v[r] for v in views]); ytr = np.concatenate([y] * len(views))
        est = make().fit(Xtr, ytr, views[0][rv], yv)
        P[te_idx] = np.mean([est.predict_proba(v[te_idx]) for v in views], axis=0)
        classes = list(est.classes_)
    return P, classes

def report(name, P, classes):
    print(f"{name:40s} cv {score(P[dev], classes, dev):.4f}", flush=True)
