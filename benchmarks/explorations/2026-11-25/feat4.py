"""Session 3: style (Gram) and layout (2x2 grid) statistics of VGG16 at 224 px, one pass.

Gram matrices are taken after a fixed, seeded random projection of the channels to 64
(compact bilinear pooling), so each layer gives 64*65/2 = 2,080 floats without any fitting.
"""
import numpy as np, time
from coversearch.store import Store
from coversearch.features.vgg16 import import_keras
from coversearch.features.images import decode_image, read_bytes
from PIL import Image
keras = import_keras()
from keras.applications.vgg16 import preprocess_input
s = Store.open("/work/main/benchmarks/results/covers5.duckdb", read_only=True)
ids = np.load("/tmp/exp2/ids.npy"); al = s.albums(ids.tolist()); paths = [al[int(a)]["path"] for a in ids]; s.close()
base = keras.applications.VGG16(include_top=False, weights="/work/shared/models/vgg16_imagenet_notop.weights.h5", input_shape=(224, 224, 3))
names = ["block3_conv3", "block4_conv3", "block5_conv3", "block4_pool"]
m = keras.Model(base.input, [base.get_layer(n).output for n in names])
rng = np.random.default_rng(0)
R = {n: (rng.standard_normal((c, 64)) / np.sqrt(c)).astype(np.float32) for n, c in zip(names[:3], (256, 512, 512))}
iu = np.triu_indices(64)
out = {k: [] for k in ("gram3", "gram4", "gram5", "grid4", "grid5", "gram5full_diag")}
t = time.time()
for st in range(0, len(ids), 32):
    x = preprocess_input(np.stack([np.asarray(Image.fromarray(decode_image(read_bytes(p)).rgb).resize((224, 224), Image.BILINEAR), dtype=np.float32) for p in paths[st:st+32]]))
    ys = [np.asarray(y, dtype=np.float32) for y in m.predict_on_batch(x)]
    for key, n, y in (("gram3", names[0], ys[0]), ("gram4", names[1], ys[1]), ("gram5", names[2], ys[2])):
        F = y.reshape(len(y), -1, y.shape[-1]) @ R[n]                   # (b, hw, 64)
        G = np.einsum("bpi,bpj->bij", F, F) / F.shape[1]
        out[key].append(G[:, iu[0], iu[1]])
    for key, y in (("grid4", ys[3]), ("grid5", ys[2])):                 # 2x2 quadrant means
        h = y.shape[1] // 2
        out[key].append(np.hstack([y[:, i*h:(i+1)*h, j*h:(j+1)*h].mean((1, 2)) for i in (0, 1) for j in (0, 1)]))
    out["gram5full_diag"].append((ys[2] ** 2).mean((1, 2)))
    if st % 640 == 0: print(st, round(time.time() - t), flush=True)
np.savez("/tmp/exp2/feat4.npz", **{k: np.concatenate(v) for k, v in out.items()})
print("done", round(time.time() - t), flush=True)
