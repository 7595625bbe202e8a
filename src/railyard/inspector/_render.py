"""Mermaid diagrams drawn as images with no network: the inspector's copy of mermaid in a headless Chromium.

Used by `railyard diagram -o FILE.svg|.png` when Playwright and a Chromium are installed
(Debian's `chromium` package, or `RAILYARD_CHROMIUM` naming one); the rendering service
(`railyard.mermaid`) is the other way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ("CHROMIUM_ARGS", "chromium", "render_image")

MERMAID_JS = Path(__file__).parent / "static" / "mermaid.min.js"

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Chromium's flags here: headless on a machine with no network and no display."""


def chromium() -> str | None:
    """The Chromium to draw with: `RAILYARD_CHROMIUM`, else `chromium` on the PATH, else `None`."""
    return os.environ.get("RAILYARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


async def render_image(code: str, image_type: str) -> bytes:
    """The mermaid text `code` as an SVG (`image_type="svg"`) or PNG (`"png"`) image.

    Raises:
        ImportError: Playwright is not installed.
        RuntimeError: no Chromium was found, or mermaid could not draw the text (its message).
    """
    from playwright.async_api import Error, async_playwright

    executable = chromium()
    if executable is None:
        raise RuntimeError("no Chromium to draw with: install Debian's chromium package, or set RAILYARD_CHROMIUM")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            page = await browser.new_page()
            await page.set_content("<!doctype html><html><body style='margin:0;background:#fff'></body></html>")
            await page.add_script_tag(path=str(MERMAID_JS))
            try:
                svg: str = await page.evaluate(
                    """async (code) => {
                        mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
                        return (await mermaid.render("diagram", code)).svg;
                    }""",
                    code,
                )
            except Error as err:
                raise RuntimeError(f"mermaid could not draw the diagram: {err.message.splitlines()[0]}") from None
            if image_type == "svg":
                return svg.encode()
            await page.set_content(f"<!doctype html><html><body style='margin:0;background:#fff'>{svg}</body></html>")
            return await page.locator("svg").first.screenshot(type="png")
        finally:
            await browser.close()
