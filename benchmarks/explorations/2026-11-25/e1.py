exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
V = np.load("/tmp/exp2/v224.npy"); Vf = np.load("/tmp/exp2/v224f.npy")
knn = lambda: KNNVote(k=10, index_kind="exact", metric="cosine")
for name, X in [("v224", V), ("v224f", Vf), ("mean224", (V + Vf) / 2), ("sqrt mean224", np.sqrt((V+Vf)/2))]:
    report("knn " + name, *cv_proba(knn, X))
report("knn aug-views 224", *cv_proba(knn, [V, Vf]))
for k in (20, 30):
    report(f"knn k{k} mean224", *cv_proba(lambda: KNNVote(k=k, index_kind="exact", metric="cosine"), (V + Vf) / 2))
