"""Where cover images come from: links files (``URL<TAB>genre/file.jpg``) shared by download and ingest."""
