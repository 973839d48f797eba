exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
import pickle
V = np.load("/tmp/exp2/v224.npy"); Vf = np.load("/tmp/exp2/v224f.npy")
M = (V + Vf) / 2
res = {}
for name, make, X in [
    ("dense v224", DenseGenre, V),
    ("dense mean224", DenseGenre, M),
    ("dense aug-views", DenseGenre, [V, Vf]),
    ("dense sqrt mean224", DenseGenre, np.sqrt(M)),
]:
    t = time.time(); P, cl = cv_proba(make, X); res[name] = P; report(name + f" ({time.time()-t:.0f}s)", P, cl)
pickle.dump((res, cl), open("/tmp/exp2/e2.pkl", "wb"))
