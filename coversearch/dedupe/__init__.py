"""Near-duplicate covers: what counts (``rules``), candidate pairs through an index
(``candidates``), keypoint verification with the aligned comparison (``verify``), groups of the
store (``groups``) and "is this cover already here?" (``check``)."""
