"""Entry point: imports every command module so that each registers itself on ``app``."""

from coversearch.cli.app import app

# Each import registers its commands on `app` (one module per command group).
from coversearch.cli import bench_cmd, classify_cmd, curate_cmd, db_cmd, dedupe_cmd, download_cmd, index_cmd, ingest_cmd, map_cmd, parquet_cmd, report_cmd, serve_cmd, similar_cmd, stats_cmd, text_cmd  # noqa: F401,E402


def main() -> None:
    app()


if __name__ == "__main__":
    main()
