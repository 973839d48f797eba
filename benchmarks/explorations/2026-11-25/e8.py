"""Session 3: Gram (style) and 2x2-grid (layout) statistics, alone and beside block statistics (5-fold CV, train+val)."""
exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
import pickle, sys
from coversearch.classify.dense import DenseGenre
from coversearch.classify.xgboost_clf import XGBoostGenre
Z = np.load("/tmp/exp2/feat4.npz"); L = np.load("/tmp/exp2/layers224.npz")
ms = np.hstack([L[f"{s}_{b}"] for s in ("mean", "std") for b in ("block3_pool", "block4_pool", "block5_pool")]).astype(np.float32)
gram = np.hstack([Z["gram3"], Z["gram4"], Z["gram5"]]).astype(np.float32)
grid = np.hstack([Z["grid4"], Z["grid5"]]).astype(np.float32)
TUNED = dict(n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8, colsample_bytree=0.3)
res = {}
def run(name, make, X):
    t = time.time(); P, cl = cv_proba(make, X); res[name] = P; report(name + f" ({time.time()-t:.0f}s)", P, cl)
    pickle.dump((res, cl), open("/tmp/exp2/e8.pkl", "wb"))
which = sys.argv[1:] or ["dg", "xg4", "xg", "dgrid", "xgrid"]
if "dg" in which: run("dense ssqrt gram345", lambda: DenseGenre(hidden=512, dropout=0.6, power=0.5), gram)
if "xg4" in which: run("xgb tuned gram4", lambda: XGBoostGenre(**TUNED), Z["gram4"].astype(np.float32))
if "xg" in which: run("xgb tuned gram345", lambda: XGBoostGenre(**TUNED), gram)
if "dgrid" in which: run("dense sqrt ms345+grid45", lambda: DenseGenre(hidden=512, dropout=0.6, power=0.5), np.hstack([ms, grid]))
if "xgrid" in which: run("xgb tuned ms345+grid45", lambda: XGBoostGenre(**TUNED), np.hstack([ms, grid]))
