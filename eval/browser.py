"""hashpa serve driven in a real browser (headless Chromium from Debian's chromium and
chromium-driver packages, through Selenium; nothing is downloaded): the browser test's code, and
the README's screenshot of the demo index.

    python -m eval.browser indexes/demo --gallery 20 --screenshot docs/serve.png
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)


def browser_missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'hashpa[browser]')"
    if not any(Path(p).is_file() for p in CHROMIUM) or not any(Path(p).is_file() for p in CHROMEDRIVER):
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


@contextlib.contextmanager
def running_server(index_dirs: list[Path], **settings) -> Iterator[str]:
    """hashpa serve's app (``create_app(index_dirs, **settings)``) on a free local port, in a thread;
    yields its address."""
    import uvicorn

    from hashpa.serve.app import create_app, server_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(server_config(create_app(index_dirs, **settings), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hashpa-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = next(p for p in CHROMIUM if Path(p).is_file())
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(next(p for p in CHROMEDRIVER if Path(p).is_file())), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def query_in_browser(address: str, query: Path | int, screenshot: Path | None = None, timeout: float = 60) -> dict[str, list[int]]:
    """Open the page and query with `query`: an image file to upload, or the n-th photo of the
    page's gallery to click. Waits for the result columns; returns the rows each column shows, by
    mode (and saves a screenshot)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(address + "/")
        wait = WebDriverWait(driver, timeout)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery img"))
        if isinstance(query, int):
            driver.find_elements(By.CSS_SELECTOR, "#gallery img")[query].click()
        else:
            driver.find_element(By.ID, "file").send_keys(str(Path(query).resolve()))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "yes")
        wait.until(lambda d: d.execute_script("return [...document.images].every((i) => i.complete)"))
        shown = {column.get_attribute("data-mode"): [(int(hit.get_attribute("data-row")), hit.get_attribute("data-mark"))
                                                     for hit in column.find_elements(By.CSS_SELECTOR, ".hit")]
                 for column in driver.find_elements(By.CSS_SELECTOR, ".column")}
        if screenshot is not None:
            driver.execute_script("window.scrollTo(0, 0)")
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        return shown


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index_dirs", type=Path, nargs="+")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--query", type=Path, help="an image to upload")
    query.add_argument("--gallery", type=int, help="click the n-th photo of the page's gallery (0: the first)")
    parser.add_argument("--screenshot", type=Path, default=Path("docs/serve.png"))
    args = parser.parse_args(argv)
    missing = browser_missing()
    if missing:
        parser.error(missing)
    with running_server(args.index_dirs) as address:
        shown = query_in_browser(address, args.query if args.query else args.gallery, args.screenshot)
    print(f"wrote {args.screenshot}; columns: {'; '.join(f'{m} {[row for row, _ in hits]}' for m, hits in shown.items())}")


if __name__ == "__main__":
    main()
