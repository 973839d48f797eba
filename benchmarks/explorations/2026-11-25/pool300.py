import numpy as np
def pools(path):
    m = np.load(path, mmap_mode="r"); n = len(m)
    out = {k: np.zeros((n, 512), np.float32) for k in ("gap", "gem", "gmp", "cgap")}
    for s in range(0, n, 128):
        x = np.asarray(m[s:s+128], dtype=np.float32)
        b = len(x)
        p = x.reshape(b, 9, 2, 9, 2, 512).max(axis=(2, 4))
        out["gap"][s:s+b] = p.mean((1, 2))
        out["gem"][s:s+b] = np.cbrt((np.maximum(x, 0) ** 3).mean((1, 2)))
        out["gmp"][s:s+b] = x.max((1, 2))
        out["cgap"][s:s+b] = x.mean((1, 2))
    return out
for tag in ("", "f"):
    for k, v in pools(f"/tmp/exp2/m300{tag}.npy").items():
        np.save(f"/tmp/exp2/{k}300{tag}.npy", v)
print("ok")
