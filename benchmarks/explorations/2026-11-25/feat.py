import numpy as np, time, sys
from coversearch.store import Store
from coversearch.features.vgg16 import import_keras
from coversearch.features.images import decode_image, read_bytes
from PIL import Image
keras = import_keras()
from keras.applications.vgg16 import preprocess_input
s = Store.open("/work/main/benchmarks/results/covers5.duckdb", read_only=True)
ids, base224 = s.load_embeddings(s.feature_set("vgg16")); al = s.albums(ids.tolist())
paths = [al[int(a)]["path"] for a in ids]
s.close()
np.save("/tmp/exp2/ids.npy", ids); np.save("/tmp/exp2/v224.npy", base224)
base = keras.applications.VGG16(include_top=False, weights="/work/shared/models/vgg16_imagenet_notop.weights.h5", input_shape=(None, None, 3))
m = keras.Model(base.input, base.get_layer("block5_conv3").output)
n = len(ids)
def imgs(start, size, flip):
    out = []
    for p in paths[start:start+32]:
        im = Image.fromarray(decode_image(read_bytes(p)).rgb)
        if im.size != (size, size): im = im.resize((size, size), Image.BILINEAR)
        if flip: im = im.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(np.asarray(im, dtype=np.float32))
    return preprocess_input(np.stack(out))
def pool5gap(maps):  # block5_pool (2x2 max) then GAP, as the product does
    b, h, w, c = maps.shape
    h2, w2 = h // 2, w // 2
    p = maps[:, :h2*2, :w2*2].reshape(b, h2, 2, w2, 2, c).max(axis=(2, 4))
    return p.mean(axis=(1, 2))
t = time.time()
f224 = np.zeros((n, 512), np.float32)
for st in range(0, n, 32):
    f224[st:st+32] = pool5gap(np.asarray(m.predict_on_batch(imgs(st, 224, True))))
np.save("/tmp/exp2/v224f.npy", f224); print("224f", time.time()-t, flush=True)
# sanity: our pool5gap on orig 224 == stored
chk = pool5gap(np.asarray(m.predict_on_batch(imgs(0, 224, False))))
print("sanity maxdiff", np.abs(chk - base224[:32]).max(), flush=True)
for flip in (False, True):
    maps = np.lib.format.open_memmap(f"/tmp/exp2/m300{'f' if flip else ''}.npy", mode="w+", dtype=np.float16, shape=(n, 18, 18, 512))
    for st in range(0, n, 32):
        maps[st:st+32] = np.asarray(m.predict_on_batch(imgs(st, 300, flip))).astype(np.float16)
        if st % 640 == 0: print(flip, st, time.time()-t, flush=True)
    maps.flush(); del maps
    print("300", flip, time.time()-t, flush=True)
