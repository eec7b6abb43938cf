"""Take docs/img/codec-ui.png: the Temporal UI of `pssync up`'s dev server showing a payload
decoded through the gateway's codec server.

    .venv/bin/python docs/img/capture_codec_ui.py [--out docs/img/codec-ui.png] [--keep-running]

The stack runs as `pssync up` runs it (the UI started with `--ui-codec-endpoint
<gateway>/codec`), on free ports in a temporary home; the demo scenario runs once. A headless
Chromium (`/usr/bin/chromium`, Playwright) then does what an operator does: signs in on the
gateway's `/codec/login` page with the dev ops token, ticks "include cross-origin credentials"
in the UI's Codec Server settings (the UI keeps them in its local storage, which is where this
script writes them), and opens the leaver's termination run: its input, the worker's name among
it, shows decoded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from playwright.async_api import async_playwright  # noqa: E402

from contracts.settings import load_settings  # noqa: E402
from demo import run_scenario  # noqa: E402
from stack import running_stack  # noqa: E402
from stack.processes import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


async def capture(out: Path, keep_running: bool) -> None:
    home = Path(tempfile.mkdtemp(prefix="pssync-codec-ui-")) / ".pssync"
    settings = load_settings(home=home)
    settings.temporal.address = f"127.0.0.1:{free_port()}"
    settings.temporal.ui_port = free_port()
    settings.gateway_port = free_port()
    settings.sandbox_port = free_port()
    settings.worker_metrics_port = free_port()
    async with running_stack(settings) as stack:
        print(json.dumps(stack.urls, indent=2))
        await run_scenario(stack, deals=1, say=lambda m: print(">", m))
        runs = [r async for r in stack.client.list_workflows("WorkflowType = 'WorkerTermination'")]
        run = runs[0]
        ui = stack.urls["temporal_ui"]
        codec = stack.urls["codec_server"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            context = await browser.new_context(viewport={"width": 1500, "height": 1100})
            page = await context.new_page()
            # 1. the operator signs in to the codec server (an HttpOnly cookie for /codec)
            await page.goto(f"{codec}/login")
            await page.fill("#token", "dev-ops-token")
            await page.click("button[type=submit]")
            await page.wait_for_selector("text=Signed in")
            # 2. the UI's Codec Server settings: this endpoint, with credentials
            await page.goto(ui)
            await page.evaluate(
                """(endpoint) => {
                    localStorage.setItem("endpoint", JSON.stringify(endpoint));
                    localStorage.setItem("overrideRemoteCodecConfiguration", "true");
                    localStorage.setItem("includeCredentials", "true");
                    localStorage.setItem("passAccessToken", "false");
                }""",
                codec,
            )
            # 3. the leaver's termination run: its input (the worker's name) decoded
            answers: list[int] = []
            page.on("response", lambda r: answers.append(r.status) if "/codec/" in r.url else None)
            url = f"{ui}/namespaces/default/workflows/{quote(run.id, safe='')}/{run.run_id}/history"
            await page.goto(url)
            await page.wait_for_selector("text=worker_name", timeout=60_000)
            await page.wait_for_timeout(1000)
            assert answers and set(answers) == {200}, f"codec server answered {answers}"
            print(f"{len(answers)} codec requests, all 200")
            await page.screenshot(path=str(out))
            if keep_running:
                print(f"UI: {url}\nCtrl-C stops everything.")
                await asyncio.Event().wait()
            await browser.close()
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "codec-ui.png")
    parser.add_argument("--keep-running", action="store_true")
    args = parser.parse_args()
    asyncio.run(capture(args.out, args.keep_running))


if __name__ == "__main__":
    main()
