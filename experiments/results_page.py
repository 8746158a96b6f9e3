"""Put a folder's generated report into docs/lab/table1-grids.md, between markers.

    python experiments/results_page.py runs/keyrows --section keyrows

replaces everything between ``<!-- generated: keyrows -->`` and
``<!-- end: keyrows -->`` in docs/lab/table1-grids.md with the folder's ``report.md``
(written by ``esx report``), its title dropped and its headings moved down
two levels, so the page's tables are the report's, never typed by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "lab" / "table1-grids.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="a folder `esx report` has written report.md into")
    ap.add_argument("--section", required=True, help="the marker's name in the page")
    ap.add_argument("--page", type=Path, default=PAGE)
    ap.add_argument("--file", default="report.md", help="the generated file (curve.md: a curve)")
    a = ap.parse_args()
    report = a.runs / a.file
    if not report.is_file():
        sys.exit(f"{report} does not exist: run `esx report {a.runs}` first")
    text = report.read_text()
    body = text.split("\n", 1)[1].strip() if text.startswith("# ") else text.strip()
    body = re.sub(r"^(#+) ", lambda m: "#" * (len(m[1]) + 2) + " ", body, flags=re.M)
    page = a.page.read_text()
    start, end = f"<!-- generated: {a.section} -->", f"<!-- end: {a.section} -->"
    if start not in page or end not in page:
        sys.exit(f"{a.page} has no {start} ... {end} markers")
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    a.page.write_text(f"{head}{start}\n\n{body}\n\n{end}{tail}")
    print(f"{a.page}: section {a.section!r} now holds {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
