"""Fetch a cover dataset from a links file, safely and resumably (``coversearch download``).

Library entry points, usable without the CLI::

    from coversearch.download import download, plan_download, FetchConfig
    plan = plan_download(Path("links.tsv"))                  # no network
    summary = download(Path("links.tsv"), Path("data/covers"), FetchConfig(retries=3))
    summary.files  # every file now present: relpath, genre, url (what ingest takes next)
"""

from coversearch.download.fetch import (
    DEFAULT_MAX_BYTES,
    TEMP_SUFFIX,
    FetchConfig,
    FetchResult,
    check_image,
    fetch_to_file,
    is_valid_image,
    parse_retry_after,
    parse_size,
)
from coversearch.download.plan import FAILURES_FILE, DownloadPlan, Duplicate, plan_download
from coversearch.download.runner import (
    DEFAULT_WORKERS,
    DownloadSummary,
    Failure,
    PresentFile,
    ProgressHook,
    download,
    remove_stale_temp,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_WORKERS",
    "FAILURES_FILE",
    "TEMP_SUFFIX",
    "DownloadPlan",
    "DownloadSummary",
    "Duplicate",
    "Failure",
    "FetchConfig",
    "FetchResult",
    "PresentFile",
    "ProgressHook",
    "check_image",
    "download",
    "fetch_to_file",
    "is_valid_image",
    "parse_retry_after",
    "parse_size",
    "plan_download",
    "remove_stale_temp",
]
