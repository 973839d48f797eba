#!/usr/bin/env bash
# The README's quick start: bash docs/quickstart.sh [COVERS]   (tests/test_docs.py runs it on 50 covers)
set -euo pipefail
covers=${1:-../shared/data/covers5}                # <genre>/<image> folders: covers5 has 5,000 covers
coversearch ingest "$covers"                        # hash, decode, the default feature sets per cover (VGG16: the slow part)
coversearch ingest "$covers" --features text        # and the words printed on each cover (opt-in OCR)
coversearch stats                                   # albums per genre, feature sets, ingest errors
coversearch index build --feature vgg16 --kind faiss-hnsw
query=$(find "$covers" -name '*.jpg' | sort | sed -n 1p)
coversearch similar "$query" -k 5                   # the 5 stored covers that look most like it
coversearch search "love" -k 5                      # covers whose printed words match (typos and lost spaces forgiven)
coversearch dedupe                                  # groups of near-duplicate covers, kept current by every ingest
coversearch train                                   # the default genre model (the longest step)
coversearch classify "$query"                       # its genres, with calibrated probabilities
coversearch evaluate                                # test accuracy, per-genre recall, calibration
coversearch serve --port "${PORT:-8000}"            # open http://127.0.0.1:8000/ and drop a cover
