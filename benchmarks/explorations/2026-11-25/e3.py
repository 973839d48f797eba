exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
import pickle
V = np.load("/tmp/exp2/v224.npy")
res = {}
for name, make, X in [
    ("xgb default v224", XGBoostGenre, V),
    ("xgb tuned v224", lambda: XGBoostGenre(n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8, colsample_bytree=0.3), V),
]:
    t = time.time(); P, cl = cv_proba(make, X); res[name] = P; report(name + f" ({time.time()-t:.0f}s)", P, cl)
pickle.dump((res, cl), open("/tmp/exp2/e3.pkl", "wb"))
