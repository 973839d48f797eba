import numpy as np, time
from coversearch.store import Store
from coversearch.features.vgg16 import import_keras
from coversearch.features.images import decode_image, read_bytes
from PIL import Image
keras = import_keras()
from keras.applications.vgg16 import preprocess_input
s = Store.open("/work/main/benchmarks/results/covers5.duckdb", read_only=True)
ids = np.load("/tmp/exp2/ids.npy"); al = s.albums(ids.tolist()); paths = [al[int(a)]["path"] for a in ids]; s.close()
base = keras.applications.VGG16(include_top=False, weights="/work/shared/models/vgg16_imagenet_notop.weights.h5", input_shape=(300, 300, 3))
names = ["block3_pool", "block4_pool", "block5_pool"]
m = keras.Model(base.input, [base.get_layer(n).output for n in names])
n = len(ids); out = {f"{k}_{n_}": [] for k in ("mean", "std") for n_ in names}
t = time.time()
for st in range(0, n, 32):
    x = preprocess_input(np.stack([np.asarray(Image.fromarray(decode_image(read_bytes(p)).rgb).resize((300, 300), Image.BILINEAR), dtype=np.float32) for p in paths[st:st+32]]))
    for name, y in zip(names, m.predict_on_batch(x)):
        y = np.asarray(y); out[f"mean_{name}"].append(y.mean((1, 2))); out[f"std_{name}"].append(y.std((1, 2)))
    if st % 1280 == 0: print(st, time.time() - t, flush=True)
np.savez("/tmp/exp2/layers300.npz", **{k: np.concatenate(v) for k, v in out.items()})
print("done", time.time() - t, flush=True)
