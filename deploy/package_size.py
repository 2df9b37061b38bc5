"""Report the deployment package's zipped and unzipped sizes against Lambda's limits.

Lambda refuses a function whose code, unzipped, exceeds 250 MB (262,144,000 bytes, i.e. 250 MiB,
layers included) and a direct upload over 50 MB zipped (Serverless uploads through S3, so only the
unzipped limit binds). `make package` runs this after `serverless package` so CI prints the
figures every time, and fails when the package outgrows the budget set here, well under the limit.

    python deploy/package_size.py [.serverless/crypto-risk-anomaly.zip] [--budget-mb 200]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections import Counter
from pathlib import Path

LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
DEFAULT_BUDGET_MB = 200
MB = 1024 * 1024  # Lambda's "MB" are MiB: 250 x 1,048,576 = 262,144,000 bytes


def sizes(package: Path) -> tuple[int, int, Counter[str]]:
    """Zipped size, unzipped size and unzipped bytes by top-level entry of a deployment zip."""
    by_top: Counter[str] = Counter()
    with zipfile.ZipFile(package) as archive:
        for entry in archive.infolist():
            if not entry.is_dir():
                by_top[entry.filename.split("/", 1)[0]] += entry.file_size
    return package.stat().st_size, sum(by_top.values()), by_top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", type=Path, default=Path(".serverless/crypto-risk-anomaly.zip"))
    parser.add_argument(
        "--budget-mb", type=float, default=DEFAULT_BUDGET_MB, help="fail above this unzipped size (MiB)"
    )
    parser.add_argument("--top", type=int, default=8, help="how many of the largest entries to list")
    args = parser.parse_args(argv)
    if not args.package.is_file():
        print(f"package_size: {args.package} not found: run `make package` first", file=sys.stderr)
        return 2
    zipped, unzipped, by_top = sizes(args.package)
    share = 100 * unzipped / LAMBDA_UNZIPPED_LIMIT_BYTES
    print(
        f"deployment package {args.package}: {zipped / MB:.1f} MiB zipped, {unzipped / MB:.1f} MiB unzipped"
        f" ({share:.0f}% of Lambda's {LAMBDA_UNZIPPED_LIMIT_BYTES / MB:.0f} MiB limit; budget {args.budget_mb:.0f} MiB)"
    )
    for name, size in by_top.most_common(args.top):
        print(f"  {size / MB:7.1f} MiB  {name}")
    if unzipped > args.budget_mb * MB:
        print(
            f"package_size: {unzipped / MB:.1f} MiB unzipped is over the {args.budget_mb:.0f} MiB budget",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
