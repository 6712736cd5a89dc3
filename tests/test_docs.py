"""The documentation: the site builds strictly (every page, link, anchor and API reference resolves),
and the product's text speaks of the product, not of how it was made."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"issue [0-9]|\blent\b|\bsessions?\b|development (cpu|machine)", re.I)


def test_the_documentation_site_builds_strictly(tmp_path):
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "search" / "index.html").read_text(encoding="utf-8").count("open_index") > 1


def test_the_product_text_speaks_of_the_product():
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "hashpa").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in texts
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if HISTORY.search(line)]
    assert not found, found


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150
