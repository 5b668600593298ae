"""Opens an HTML page in headless Chromium: a screenshot, and a count of the images that loaded.

``python tests/browser.py report.html shot.png`` screenshots a report by hand; the tests call
``screenshot``, ``loaded_images`` and ``dump_dom``. Needs Debian's ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Marks <body> with how many of its <img> have decoded (naturalWidth > 0), once the page has loaded.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});
</script>"""


def chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium, offline and with a throwaway profile (root needs --no-sandbox)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                   f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 3000) -> Path:
    """Renders ``page`` to ``png`` at ``width`` x ``height``."""
    run_chromium([f"--screenshot={Path(png).resolve()}", f"--window-size={width},{height}",
                  Path(page).resolve().as_uri()])
    return Path(png)


def dump_dom(page: Path) -> str:
    """The page's DOM as Chromium serialises it once the page has loaded (with the image probe's marks)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(Path(page).read_text().replace("</body>", PROBE + "</body>"))
        return run_chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]).stdout


def loaded_images(page: Path) -> tuple[int, int]:
    """``(loaded, total)``: how many of the page's <img> Chromium decoded, read from the DOM after load."""
    dom = dump_dom(page)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    total = re.search(r'data-images-total="(\d+)"', dom)
    if not (loaded and total):
        raise RuntimeError("the probe script did not run: no image counts in the dumped DOM")
    return int(loaded.group(1)), int(total.group(1))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/browser.py PAGE.html SHOT.png")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
    print("images loaded: %d of %d" % loaded_images(Path(sys.argv[1])))
