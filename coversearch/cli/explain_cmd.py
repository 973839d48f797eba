"""`coversearch classify IMAGE --explain OUT.png`: the occlusion heat map of the top genre."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.errors import CoverSearchError, ImageError
from coversearch.fsutil import check_output, write_atomic


def check_explain_target(paths: list[Path], out: Path) -> None:
    """Refuse before any work: one image to explain, and a writable place for the PNG."""
    if len(paths) != 1:
        raise CoverSearchError(f"--explain explains one image; {len(paths)} were given")
    check_output(out, "--explain")


def write_explanation(trained, image: Path, out: Path, vgg16_weights) -> None:
    from coversearch.classify.explain import model_embedder, occlusion
    from coversearch.imaging.images import decode_image, read_bytes

    try:
        rgb = decode_image(read_bytes(image)).rgb
    except ImageError as exc:
        raise CoverSearchError(f"cannot explain {image}: {exc}") from None
    found = occlusion(trained, model_embedder(trained, vgg16_weights), rgb)
    data = found.png(rgb)
    write_atomic(out, data, option="--explain")
    typer.echo(
        f"explanation of {found.genre} ({found.probability:.0%}) for {image}: {out} "
        f"({found.patches} masked copies; hottest patch centred at row {found.peak[0]}, column {found.peak[1]})",
        err=True,
    )
