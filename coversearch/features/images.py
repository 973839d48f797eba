"""Old home of coversearch/imaging/images.py, kept so that code importing it still runs."""

from coversearch.imaging.images import *  # noqa: F401,F403
