"""Images, below both the features and the store: safe decoding (images.py) and the thumbnail cache (thumbs.py)."""
