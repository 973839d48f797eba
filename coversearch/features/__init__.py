"""Per-image feature extractors and the image decoding they share."""
