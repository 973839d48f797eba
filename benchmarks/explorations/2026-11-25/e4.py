exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
L = lambda n: np.load(f"/tmp/exp2/{n}.npy")
knn = lambda: KNNVote(k=20, index_kind="exact", metric="cosine")
feats = {"v224": L("v224"), "gap300": L("gap300"), "gap300 mean flip": (L("gap300") + L("gap300f")) / 2,
         "gem300": L("gem300"), "gmp300": L("gmp300"), "cgap300": L("cgap300"), "b4gap": L("b4gap"), "b4gmp": L("b4gmp"),
         "v224+gap300": np.hstack([L("v224"), L("gap300")])}
for name, X in feats.items():
    report("knn20 sqrt " + name, *cv_proba(knn, np.sqrt(np.maximum(X, 0))))
for name in ("v224", "gap300", "gap300 mean flip", "gem300", "gmp300", "b4gap"):
    report("dense sqrt " + name, *cv_proba(DenseGenre, np.sqrt(np.maximum(feats[name], 0))))
