"""One VGG16 forward pass per cover: `vgg16` and `vgg16-layers` are heads over one shared backbone.

The heads must give exactly the vectors of the stand-alone Keras pipelines they replaced (stores
and models made before stay valid), ingest must run the network once per new cover whatever the
number of heads, and a process that serves or classifies must hold one network per input recipe.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coversearch.features.embedder import Embedder
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import get_extractor
from coversearch.features.vgg16 import IMAGENET_224, STUDY_150, import_keras, shared_backbone
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store
from conftest import REPO, copy_covers

OLD_STORE = Path(__file__).parent / "data" / "store-c0b12c6-hsv-vgg16.duckdb.gz"
# The ten covers that OLD_STORE was ingested from (two per genre, files 600 and 601), with the
# code of commit c0b12c6, which ran one Keras model per VGG16 feature.
OLD_STORE_OFFSET, OLD_STORE_PER_GENRE = 600, 2


def assert_float32_close(ours, want) -> None:
    """Equal up to float32 rounding: the kernels TensorFlow picks differ by CPU model, so the
    same network's sums are ordered differently; the bound is relative to the vectors' scale (10-50)."""
    ours, want = np.asarray(ours), np.asarray(want)
    assert ours.shape == want.shape
    assert np.abs(ours - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def _covers(covers5_dir: Path, n_per_genre: int = 2, offset: int = 40) -> list[Path]:
    return [p for g in ("Country", "Electronic", "HipHop", "Pop", "Rock")
            for p in sorted((covers5_dir / g).iterdir())[offset : offset + n_per_genre]]


def test_heads_equal_the_stand_alone_keras_pipelines(covers5_dir, vgg16_weights):
    """vgg16 = Keras' VGG16(pooling="avg"); vgg16-layers = block 3-5 means and stds of its own model."""
    paths = _covers(covers5_dir)
    images = [decode_image(read_bytes(p)).rgb for p in paths]
    heads = Embedder([get_extractor(n, vgg16_weights=vgg16_weights) for n in ("vgg16", "vgg16-layers")])
    ours = heads.embed(images)

    keras = import_keras()
    from keras.applications.vgg16 import preprocess_input

    pixels = preprocess_input(np.stack([
        np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BILINEAR), dtype=np.float32) for rgb in images
    ]))
    averaged = keras.applications.VGG16(include_top=False, weights=str(vgg16_weights), input_shape=(224, 224, 3), pooling="avg")
    want_vgg16 = np.asarray(averaged.predict_on_batch(pixels))
    base = keras.applications.VGG16(include_top=False, weights=str(vgg16_weights), input_shape=(224, 224, 3))
    blocks = keras.Model(base.input, [base.get_layer(f"block{i}_pool").output for i in (3, 4, 5)])
    maps = [np.asarray(m) for m in blocks.predict_on_batch(pixels)]
    want_layers = np.hstack([m.mean(axis=(1, 2)) for m in maps] + [m.std(axis=(1, 2)) for m in maps])

    assert ours["vgg16"].shape == (10, 512) and ours["vgg16-layers"].shape == (10, 2560)
    assert_float32_close(ours["vgg16"], want_vgg16)
    assert_float32_close(ours["vgg16-layers"], want_layers)
    # Each head alone gives the same numbers as both together.
    alone = get_extractor("vgg16", vgg16_weights=vgg16_weights)
    np.testing.assert_array_equal(alone.extract([alone.prepare(rgb) for rgb in images]), ours["vgg16"])


def test_heads_on_one_recipe_share_one_backbone(vgg16_weights):
    vgg16, layers, study = (get_extractor(n, vgg16_weights=vgg16_weights) for n in ("vgg16", "vgg16-layers", "vgg16-study"))
    assert vgg16.backbone is layers.backbone is shared_backbone(vgg16_weights, IMAGENET_224)
    assert study.backbone is shared_backbone(vgg16_weights, STUDY_150) and study.backbone is not vgg16.backbone
    embedder = Embedder([get_extractor("hsv"), vgg16, layers, study])
    assert len(embedder.backbones()) == 2


def test_ingest_runs_the_network_once_per_new_cover(tmp_path, covers5_dir, vgg16_weights, cross_genre_duplicates):
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=2, offset=50)
    electronic, pop = cross_genre_duplicates[0]
    shutil.copy2(electronic, root / "Electronic" / electronic.name)
    shutil.copy2(pop, root / "Pop" / pop.name)  # the same bytes twice: one album, one pass
    extractors = [get_extractor(n, vgg16_weights=vgg16_weights) for n in ("hsv", "vgg16", "vgg16-layers")]
    backbone, study = shared_backbone(vgg16_weights, IMAGENET_224), shared_backbone(vgg16_weights, STUDY_150)
    before, study_before = backbone.images_forwarded, study.images_forwarded
    with Store.open(tmp_path / "s.duckdb") as store:
        summary = ingest(store, read_folder(root), extractors, batch_size=4).to_dict()
        assert summary["albums_added"] == 11 and summary["files_added"] == 12
        assert summary["embeddings_added"] == {"hsv": 11, "vgg16": 11, "vgg16-layers": 11}
        assert backbone.images_forwarded - before == 11  # not 22 (two heads) nor 12 (two files)
        assert study.images_forwarded == study_before  # vgg16-study was not asked for
        # Stored columns [768, 1280) of vgg16-layers are exactly the stored vgg16 vectors.
        ids, v = store.load_embeddings(store.feature_set("vgg16"))
        ids2, l = store.load_embeddings(store.feature_set("vgg16-layers"))
        np.testing.assert_array_equal(ids, ids2)
        assert_float32_close(l[:, 768:1280], v)
        # Nothing is missing, so a re-run embeds nothing.
        again = ingest(store, read_folder(root), extractors).to_dict()
    assert sum(again["embeddings_added"].values()) == 0 and backbone.images_forwarded - before == 11


def test_a_store_made_before_the_backbone_is_read_and_extended(tmp_path, covers5_dir, vgg16_weights):
    """A store written by the two-network code (commit c0b12c6) keeps its vectors and feature sets."""
    db = tmp_path / "old.duckdb"
    with gzip.open(OLD_STORE) as src, open(db, "wb") as dst:
        shutil.copyfileobj(src, dst)
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=OLD_STORE_PER_GENRE, offset=OLD_STORE_OFFSET)
    vgg16 = get_extractor("vgg16", vgg16_weights=vgg16_weights)
    with Store.open(db) as store:
        old_sets = {fs.name: fs for fs in store.feature_sets()}
        assert set(old_sets) == {"hsv", "vgg16"}
        old_ids, old_vectors = store.load_embeddings(old_sets["vgg16"])
        forwarded = vgg16.backbone.images_forwarded
        summary = ingest(store, read_folder(root), [get_extractor("hsv"), vgg16,
                                                    get_extractor("vgg16-layers", vgg16_weights=vgg16_weights)]).to_dict()
        # Same bytes, same albums; only the missing feature is computed, in one pass per cover.
        assert summary["albums_added"] == 0 and summary["embeddings_added"] == {"vgg16-layers": 10}
        assert vgg16.backbone.images_forwarded - forwarded == 10
        new_sets = {fs.name: fs for fs in store.feature_sets()}
        assert new_sets["vgg16"] == old_sets["vgg16"] and new_sets["hsv"] == old_sets["hsv"]
        ids, vectors = store.load_embeddings(new_sets["vgg16"])
        np.testing.assert_array_equal(ids, old_ids)
        np.testing.assert_array_equal(vectors, old_vectors)  # untouched, not re-embedded
        # The old vectors are what the backbone computes today, so old and new vectors mix safely.
        paths = {a: Path(row["path"]).name for a, row in store.albums(list(map(int, ids))).items()}
        files = {p.name: p for p in root.rglob("*.jpg")}
        today = vgg16.extract([vgg16.prepare(decode_image(read_bytes(files[paths[int(a)]])).rgb) for a in ids])
        assert_float32_close(today, old_vectors)
        _, layers = store.load_embeddings(new_sets["vgg16-layers"], list(map(int, ids)))
        assert_float32_close(layers[:, 768:1280], old_vectors)


def test_serve_and_classify_hold_one_network(web_store, vgg16_weights, covers5_dir, tmp_path):
    """In a fresh process: the web engine (searching vgg16, classifying with a vgg16-layers model)
    builds one VGG16 network, embeds an upload once for both, and `classify_images` reuses it."""
    db, models, _ = web_store
    queries = [str(p) for p in _covers(covers5_dir, 1, offset=900)]
    script = textwrap.dedent(f"""
        import json, sys
        from coversearch.classify.model import TrainedModel
        from coversearch.classify.apply import classify_images
        from coversearch.features.vgg16 import loaded_backbones
        from coversearch.store import Store
        from coversearch.web import create_app

        app = create_app({str(db)!r}, {str(models)!r}, {str(tmp_path / 'no-indexes')!r}, {str(vgg16_weights)!r})
        built = [b for b in loaded_backbones() if b.built]
        start = built[0].images_forwarded
        with open({queries[0]!r}, "rb") as fh:
            answer = app.test_client().post("/api/query", data={{"image": (fh, "q.jpg"), "feature": "vgg16",
                                                                 "model": "xgb-layers"}})
        assert answer.status_code == 200, answer.get_json()
        upload = built[0].images_forwarded - start
        with Store.open({str(db)!r}, read_only=True) as store:
            results = classify_images(store, TrainedModel.load({str(models)!r}, "xgb-layers"), {queries!r},
                                      vgg16_weights={str(vgg16_weights)!r})
        print(json.dumps({{"built": len([b for b in loaded_backbones() if b.built]), "upload": upload,
                          "classify": built[0].images_forwarded - start - upload,
                          "genres": len(answer.get_json()["genres"]), "ok": sum(r.genres is not None for r in results)}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {"built": 1, "upload": 1, "classify": 5, "genres": 5, "ok": 5}
