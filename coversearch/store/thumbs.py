"""Old home of coversearch/imaging/thumbs.py, kept so that code importing it still runs."""

from coversearch.imaging.thumbs import *  # noqa: F401,F403
