exec(open(__file__.rsplit("/", 1)[0] + "/harness.py").read())
import pickle, itertools
res = {}
for f in sys.argv[1:]:
    r, cl = pickle.load(open(f, "rb")); res.update(r)
for n, P in res.items(): report(n, P, cl)
names = list(res)
best = []
for k in (2, 3, 4):
    for combo in itertools.combinations(names, k):
        best.append((score(sum(res[c][dev] for c in combo), cl, dev), combo))
for sc, combo in sorted(best, reverse=True)[:8]: print(f"{sc:.4f}", " + ".join(combo))
