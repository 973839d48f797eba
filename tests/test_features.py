"""Image decoding and the two extractors, on real covers and real VGG16 weights."""

from __future__ import annotations

import io
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from badfiles import make_bad_files
from coversearch.errors import FeatureError, ImageError
from coversearch.features.base import extract_images
from coversearch.features.hsv import HSVHistogram
from coversearch.imaging.images import decode_image, mirror, read_bytes
from coversearch.features.registry import get_extractor, parse_feature_list
from coversearch.features.vgg16 import VGG16Features, VGG16LayerStats, VGG16StudyFeatures, import_keras
from coversearch.store import Store


def _first(covers5_dir, genre, n=1):
    return sorted((covers5_dir / genre).iterdir())[:n]


def _distinct(covers5_dir, genres):
    """One cover per genre, skipping files whose bytes were already taken (covers5 has duplicates)."""
    seen, picked = set(), []
    for genre in genres:
        for path in sorted((covers5_dir / genre).iterdir()):
            data = path.read_bytes()
            if data not in seen:
                seen.add(data)
                picked.append(path)
                break
    return picked


def test_each_bad_file_gets_its_reason_and_odd_formats_decode_to_rgb(covers5_dir, tmp_path):
    expected = make_bad_files(_first(covers5_dir, "Rock")[0], tmp_path)
    for name, reason in expected.items():
        if reason is None:
            image = decode_image(read_bytes(tmp_path / name))
            assert image.rgb.shape == (300, 300, 3) and image.rgb.dtype == np.uint8, name
        else:
            with pytest.raises(ImageError) as info:
                decode_image(read_bytes(tmp_path / name))
            assert info.value.reason == reason, f"{name}: {info.value}"


def test_transparent_pixels_become_white_not_black():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    assert (decode_image(buf.getvalue()).rgb == 255).all()


def test_cmyk_and_grey_keep_the_picture(covers5_dir):
    original = decode_image(read_bytes(_first(covers5_dir, "Pop")[0])).rgb
    for mode in ("L", "CMYK"):
        buf = io.BytesIO()
        Image.fromarray(original).convert(mode).save(buf, "JPEG", quality=95)
        converted = decode_image(buf.getvalue()).rgb.astype(int)
        grey_original = np.asarray(Image.fromarray(original).convert("L"), dtype=int)
        grey_converted = np.asarray(Image.fromarray(converted.astype(np.uint8)).convert("L"), dtype=int)
        assert np.abs(grey_original - grey_converted).mean() < 12, mode


def test_hsv_matches_the_study_recipe_on_opencv_bgr_pixels(covers5_dir):
    path = _first(covers5_dir, "Country")[0]
    # The study: cv2.imread (BGR) -> BGR2HSV -> calcHist 8x8x8 -> cv2.normalize -> flatten.
    bgr = cv2.imread(str(path))
    hist = cv2.calcHist([cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)], [0, 1, 2], None, [8, 8, 8], [0, 180, 0, 256, 0, 256])
    study = cv2.normalize(hist, hist).flatten()
    ours = extract_images(HSVHistogram(), [decode_image(read_bytes(path)).rgb])[0]
    assert ours.shape == (512,) and ours.dtype == np.float32
    assert np.linalg.norm(ours) == pytest.approx(1.0, abs=1e-5)
    # Pillow and libjpeg-turbo in OpenCV may round a few pixels differently; the histograms agree.
    assert np.abs(ours - study).max() < 0.01


def test_vgg16_mirror_is_closer_than_any_other_cover(covers5_dir, vgg16_extractor):
    paths = _distinct(covers5_dir, ("Country", "HipHop", "Rock", "Electronic"))
    images = [decode_image(read_bytes(p)).rgb for p in paths]
    vectors = extract_images(vgg16_extractor, images + [mirror(im) for im in images])
    assert vectors.shape == (8, 512) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    originals, mirrors = unit[:4], unit[4:]
    for i in range(4):
        to_mirror = originals[i] @ mirrors[i]
        to_others = [originals[i] @ originals[j] for j in range(4) if j != i]
        assert to_mirror > max(to_others) + 0.2, (i, to_mirror, to_others)
    # Deterministic: the same image gives the same vector.
    again = extract_images(vgg16_extractor, images[:1])[0]
    np.testing.assert_allclose(again, vectors[0], rtol=1e-4, atol=1e-4)


def test_vgg16_layer_statistics_are_block_means_and_stds(covers5_dir, vgg16_weights, vgg16_extractor):
    """One pass gives block 3-5 channel means then stds; the block5 means are the study's vgg16 vector."""
    paths = _distinct(covers5_dir, ("Country", "HipHop", "Rock", "Electronic"))
    images = [decode_image(read_bytes(p)).rgb for p in paths]
    layers = VGG16LayerStats(vgg16_weights)
    stats = extract_images(layers, images)
    assert stats.shape == (4, 2560) and stats.dtype == np.float32 and layers.dim == 2560
    np.testing.assert_allclose(stats[:, 768:1280], extract_images(vgg16_extractor, images), rtol=1e-4, atol=1e-4)
    means, stds = stats[:, :1280], stats[:, 1280:]
    assert (means >= 0).all() and (stds >= 0).all()  # statistics of ReLU/max-pool outputs
    # A cover's activations vary over its positions: the stds carry information, per cover.
    assert (stds.sum(axis=1) > 0).all() and not np.allclose(stds[0], stds[1])
    # block3 means come straight from the network: check one cover against a Keras model built here.
    keras = import_keras()
    from keras.applications.vgg16 import preprocess_input

    block3 = keras.Model(layers.model().input, layers.model().get_layer("block3_pool").output)
    maps = np.asarray(block3.predict_on_batch(preprocess_input(np.stack([layers.prepare(images[0])]))))
    np.testing.assert_allclose(stats[0, :256], maps[0].mean(axis=(0, 1)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats[0, 1280:1536], maps[0].std(axis=(0, 1)), rtol=1e-3, atol=1e-3)
    assert layers.model_fingerprint() == vgg16_extractor.model_fingerprint()
    assert layers.params()["layers"] == ["block3_pool", "block4_pool", "block5_pool"]


def test_vgg16_study_is_what_the_studys_keras_pipeline_computes(covers5_dir, vgg16_weights, vgg16_extractor):
    """vgg16-study = the study's cnn.py input: Keras' load_img at 150 px, /255, block5_pool flattened."""
    paths = _distinct(covers5_dir, ("Country", "Pop"))
    images = [decode_image(read_bytes(p)).rgb for p in paths]
    study = VGG16StudyFeatures(vgg16_weights)
    ours = extract_images(study, images)
    assert ours.shape == (2, 8192) and study.dim == 8192 and ours.dtype == np.float32
    keras = import_keras()
    # The study's own way in: keras.utils.load_img (nearest resize), img_to_array, rescale 1/255.
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(150, 150))) for p in paths]) / 255.0
    maps = np.asarray(study.model().predict_on_batch(pixels))
    assert maps.shape == (2, 4, 4, 512)
    np.testing.assert_allclose(ours, maps.reshape(2, -1), rtol=1e-4, atol=1e-5)
    # Not our vgg16 feature in another shape: the study fed VGG16 unnormalised [0, 1] pixels.
    averaged = maps.mean(axis=(1, 2))
    assert not np.allclose(averaged, extract_images(vgg16_extractor, images), rtol=0.1)
    assert study.model_fingerprint() == vgg16_extractor.model_fingerprint()
    assert study.params()["input_size"] == 150 and get_extractor("vgg16-study", vgg16_weights=vgg16_weights).name == "vgg16-study"


def test_vgg16_fingerprint_is_the_weights_file_hash(vgg16_weights):
    fp = VGG16Features(vgg16_weights).model_fingerprint()
    assert fp == "sha256:a2f51117308129c3de9a523c91d35160eb75a6a9e5db1e2afb4f48e48dfb733a"


def test_vgg16_weights_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FeatureError, match="not found"):
        VGG16Features(tmp_path / "nope.weights.h5")


def test_vgg16_without_weights_names_both_options(monkeypatch):
    # No path and no env: Keras tries its own download, which cannot succeed on these machines.
    monkeypatch.delenv("COVERSEARCH_VGG16_WEIGHTS", raising=False)
    with pytest.raises(FeatureError) as info:
        VGG16Features(None).model()
    assert "--vgg16-weights" in str(info.value) and "COVERSEARCH_VGG16_WEIGHTS" in str(info.value)


def test_vgg16_weights_from_env(monkeypatch, vgg16_weights):
    monkeypatch.setenv("COVERSEARCH_VGG16_WEIGHTS", str(vgg16_weights))
    assert VGG16Features().model_fingerprint().startswith("sha256:a2f511")


def test_a_store_refuses_embeddings_from_other_weights(tmp_path, vgg16_weights):
    other = tmp_path / "other.weights.h5"
    shutil.copyfile(vgg16_weights, other)
    with open(other, "ab") as fh:
        fh.write(b"\0")  # other bytes: another model as far as the store can tell
    with Store.open(tmp_path / "s.duckdb") as store:
        store.ensure_feature_set(VGG16Features(vgg16_weights))
        with pytest.raises(FeatureError, match="made with model"):
            store.ensure_feature_set(VGG16Features(other))


def test_feature_lists():
    assert parse_feature_list("hsv, vgg16,hsv") == ["hsv", "vgg16"]
    assert parse_feature_list("vgg16-layers,vgg16-study") == ["vgg16-layers", "vgg16-study"]
    with pytest.raises(FeatureError, match="unknown feature"):
        parse_feature_list("hsv,colour")
    with pytest.raises(FeatureError):
        get_extractor("sift")
