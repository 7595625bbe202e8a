"""Screenshots of the inspector for the docs: `python -m tests.support.screenshots docs/images`.

The browser test takes them too (into a temporary folder), so this code always runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("take",)


def take(page: Any, base_url: str, out_dir: Path, *, run_id: str) -> list[Path]:
    """The runs page and one run's page, as PNG files in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = out_dir / "inspector-runs.png"
    page.set_viewport_size({"width": 1280, "height": 400})
    page.goto(base_url + "/")
    page.wait_for_selector("table.runs")
    page.screenshot(path=str(runs))
    run = out_dir / "inspector-run.png"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base_url}/runs/{run_id}")
    page.wait_for_selector("#diagram svg")
    page.screenshot(path=str(run), full_page=True)
    return [runs, run]


def _make_store(folder: Path) -> str:
    """A store with the flagship example's runs: one waiting for approval, one approved and ended, one failed."""
    import concurrent.futures
    import contextlib

    import anyio
    from examples.document_review import Approval, ReviewState, review

    from railyard.store.urls import open_store
    from railyard.suspension import RunSuspended, signal
    from tests.support.cli_graphs import Explode, failing

    url = f"sqlite:{folder / 'demo.db'}"

    async def fill() -> None:
        store = open_store(url)
        try:
            for run_id in ("review-1", "review-2"):
                with contextlib.suppress(RunSuspended):
                    await review.run(state=ReviewState(), store=store, run_id=run_id)
            await signal(store, "review-1", "approval", Approval(approved=True, by="Dana", note="ship it"))
            await review.resume(store, "review-1")
            with contextlib.suppress(ValueError):
                await failing.run(Explode(), store=store, run_id="nightly-3")
        finally:
            await store.aclose()  # type: ignore[attr-defined]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, fill).result()
    return url


def main(out_dir: Path) -> None:
    """Take the docs' screenshots from a fresh store of the flagship example's runs."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from tests.support.inspector import serving
    from tests.test_inspector_browser import CHROMIUM_ARGS, chromium_path

    with tempfile.TemporaryDirectory() as folder:
        url = _make_store(Path(folder))
        with (
            serving(url, ("examples.document_review:review",), store_label="sqlite:demo.db") as served,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
            try:
                for shot in take(browser.new_page(), served.url, out_dir, run_id="review-2"):
                    print(f"wrote {shot}")
            finally:
                browser.close()


if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
