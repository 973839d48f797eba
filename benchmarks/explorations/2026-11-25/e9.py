"""Session 3: what refitting on train+validation is worth, and XGBoost variants (5-fold CV, train+val).

"refit" rows fit on all 4 training folds (no held-out early-stopping fold); a dense head then
trains for the number of epochs its early-stopped run chose, scaled by the larger data.
"""
exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
import pickle, sys
from coversearch.classify.dense import DenseGenre
from coversearch.classify.xgboost_clf import XGBoostGenre
L = np.load("/tmp/exp2/layers224.npz")
ms = np.hstack([L[f"{s}_{b}"] for s in ("mean", "std") for b in ("block3_pool", "block4_pool", "block5_pool")]).astype(np.float32)
TUNED = dict(n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8, colsample_bytree=0.3)

def cv_refit(make, X, dense=False):
    P = np.zeros((len(ids), 5))
    for f in range(5):
        tr_idx = dev[fold[dev] != f]; te_idx = dev[fold[dev] == f]
        r, y = expand(tr_idx)
        if dense:  # find the epoch count on the inner split, then refit on everything
            va_idx = tr_idx[fold[tr_idx] == (f + 1) % 5]; fit_idx = tr_idx[fold[tr_idx] != (f + 1) % 5]
            r1, y1 = expand(fit_idx); rv, yv = expand(va_idx)
            probe = make().fit(X[r1], y1, X[rv], yv)
            best = max(1, probe.epochs_run_ - probe.patience)
            est = make(); est.epochs = int(round(best * len(r) / len(r1))); est.fit(X[r], y)
        else:
            est = make().fit(X[r], y)
        P[te_idx] = est.predict_proba(X[te_idx]); classes = list(est.classes_)
    return P, classes

res = {}
def run(name, fn):
    t = time.time(); P, cl = fn(); res[name] = P; report(name + f" ({time.time()-t:.0f}s)", P, cl)
    pickle.dump((res, cl), open("/tmp/exp2/e9.pkl", "wb"))
which = sys.argv[1:]
b45 = ms[:, 256:1280]
if "rx" in which: run("refit xgb tuned ms345", lambda: cv_refit(lambda: XGBoostGenre(**TUNED), ms))
if "rx45" in which: run("refit xgb tuned s1 b45 means", lambda: cv_refit(lambda: XGBoostGenre(**TUNED, seed=1), b45))
if "rd" in which: run("refit dense sqrt ms345", lambda: cv_refit(lambda: DenseGenre(hidden=512, dropout=0.6, power=0.5), ms, dense=True))
if "x45s1" in which: run("xgb tuned s1 b45 means", lambda: cv_proba(lambda: XGBoostGenre(**TUNED, seed=1), b45))
for s in range(1, 5):
    if f"xs{s}" in which: run(f"xgb tuned ms345 seed {s}", lambda: cv_proba(lambda: XGBoostGenre(**TUNED, seed=s), ms))
if "xslow" in which: run("xgb 1000 trees d4 eta .02 col .2", lambda: cv_proba(lambda: XGBoostGenre(n_estimators=1000, max_depth=4, learning_rate=0.02, subsample=0.8, colsample_bytree=0.2), ms))
if "xd3" in which: run("xgb 600 trees d3 eta .05 col .2", lambda: cv_proba(lambda: XGBoostGenre(n_estimators=600, max_depth=3, learning_rate=0.05, subsample=0.8, colsample_bytree=0.2), ms))
