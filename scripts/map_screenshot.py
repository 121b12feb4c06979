#!/usr/bin/env python
"""Screenshot the Space's topic map of a result, with one cluster opened by clicking its circle on the map.

    python scripts/map_screenshot.py results/sharegpt-lenses docs/topic-map.png [--colour "Score: learning_value"]

Serves the result with `clio-hf view` in this process and drives Debian's chromium (/usr/bin/chromium) headless.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLICK_BIGGEST_CIRCLE = """() => {
  const gd = document.querySelector('#clio-map .js-plotly-plot');
  const L = gd._fullLayout, box = gd.getBoundingClientRect(), t = gd._fullData.find((t) => t.name === 'clusters');
  return [box.left + L._size.l + L.xaxis.d2p(t.x[0]), box.top + L._size.t + L.yaxis.d2p(t.y[0]), t.customdata[0][0]];
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="result folder or Hub repo id")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--colour", help="a 'Colour the map by' option, e.g. 'Group: language'")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from clio_hf.space import launch_view

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch_view(args.result, port=port, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(demo.local_url, wait_until="networkidle")
            page.wait_for_selector("#clio-map .js-plotly-plot[data-clio-hooked]")
            if args.colour:
                page.locator("#clio-colour input").click()
                page.get_by_role("option", name=args.colour).click()
                page.wait_for_timeout(1500)
            page.locator("#clio-map").scroll_into_view_if_needed()
            x, y, node = page.evaluate(CLICK_BIGGEST_CIRCLE)
            page.mouse.click(x, y)  # opens the biggest top-level cluster in the tree, as a user would
            page.wait_for_selector(f'.clio-detail[data-node="{node}"]')
            page.mouse.move(x, y)
            page.wait_for_timeout(800)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
