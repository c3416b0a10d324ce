"""STG-CMA Studio: ``python app.py`` starts the app on the embedded default (offline) and prints its URL.

Flags: ``--checkpoint SOURCE`` ("default", a folder, or a Hub repo id), ``--device`` (auto, cpu,
cuda...), ``--port``, ``--share`` (a public gradio.live link; off by default), ``--runs`` (where
the Train tab keeps its runs), ``--examples`` (folder of example clips). On a Hugging Face Space
this file is the entry point and the Space decides the server address.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import logging  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default",
                        help="'default' (assets/default), a checkpoint folder, or a Hub repo id")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--runs", default="runs", help="folder for training runs started from the Train tab")
    parser.add_argument("--examples", default=None, help="folder of example .mp4 clips (default assets/examples)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app.main import CSS, EXAMPLES_DIR, THEME, build_demo, make_context
    from stgcma.inference import available_devices

    device = args.device
    if device == "auto":
        device = "cuda" if available_devices()["cuda"] else "cpu"
    ctx = make_context(args.checkpoint, device, runs=args.runs, examples=args.examples or EXAMPLES_DIR)
    demo = build_demo(ctx)
    launch: dict = {"theme": THEME, "css": CSS, "share": args.share, "server_port": args.port}
    if not (os.environ.get("SPACE_ID") or os.environ.get("GRADIO_SERVER_NAME")):
        launch["server_name"] = "127.0.0.1"
    demo.queue(default_concurrency_limit=2).launch(**launch)


if __name__ == "__main__":
    main()
