"""STG-CMA Studio: ``python app.py`` starts the app on the embedded default (offline) and prints its URL.

Flags: ``--checkpoint SOURCE`` ("default", a folder, or a Hub repo id), ``--device`` (auto, cpu,
cuda...), ``--port``, ``--host`` (default 127.0.0.1; a Space decides its own), ``--share`` (a
public gradio.live link; off by default), ``--runs`` (where the Train tab keeps its runs),
``--examples`` (folder of example clips), ``--models`` (a folder of checkpoints the Model list
offers), the limits (``--max-file-mb``, ``--max-duration``, ``--queue-size``, ``--concurrency``,
``--max-jobs``, ``--max-results``) and ``--enable-training``.

Training is off unless ``--enable-training`` or ``STGCMA_ENABLE_TRAINING=1``. On an address beyond
this computer (``--host 0.0.0.0``, ``--share``, a Space) it also needs a login, read from the
environment, never from code: ``STGCMA_AUTH="user:password[,user2:password2]"`` or
``STGCMA_AUTH_FILE=PATH`` (one ``user:password`` per line; the file wins when both are set);
without one the app refuses to start.
When a login is given it protects the whole app.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TRUE = ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default",
                        help="'default' (assets/default), a checkpoint folder, or a Hub repo id")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    parser.add_argument("--host", default=None,
                        help="address to listen on (default 127.0.0.1; on a Space, the Space's own)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--runs", default="runs", help="folder for training runs started from the Train tab")
    parser.add_argument("--examples", default=None, help="folder of example .mp4 clips (default assets/examples)")
    parser.add_argument("--models", default=None,
                        help="folder of checkpoint folders that visitors may pick in the Model list (besides the "
                             "embedded default and the Train tab's runs)")
    parser.add_argument("--enable-training", action="store_true",
                        help="turn the Train tab on (also STGCMA_ENABLE_TRAINING=1); beyond localhost it needs "
                             "STGCMA_AUTH or STGCMA_AUTH_FILE")
    parser.add_argument("--max-jobs", type=int, default=1, help="training jobs running at once (default 1)")
    parser.add_argument("--max-file-mb", type=int, default=200, help="largest upload in MB (default 200)")
    parser.add_argument("--max-duration", type=float, default=600.0,
                        help="longest clip analysed in seconds; longer ones are cut (default 600)")
    parser.add_argument("--queue-size", type=int, default=16,
                        help="requests that may wait for the model; more are told to try again (default 16)")
    parser.add_argument("--concurrency", type=int, default=1, help="model requests served at once (default 1)")
    parser.add_argument("--max-results", type=int, default=64,
                        help="analyses whose outputs stay in the work folder; older ones are removed (default 64)")
    return parser.parse_args(argv)


def bind_address(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """The address the app will listen on: ``--host``, else the Space's/gradio's own, else 127.0.0.1."""
    return args.host or env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if env.get("SPACE_ID") else "127.0.0.1")


def is_public(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """Whether people beyond this computer can reach the app."""
    return bool(args.share or env.get("SPACE_ID")) or bind_address(args, env) not in LOCAL_HOSTS


def read_auth(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Logins from ``STGCMA_AUTH`` ("user:password", comma separated) or the file ``STGCMA_AUTH_FILE``."""
    items, where = env.get("STGCMA_AUTH", "").split(","), "STGCMA_AUTH"
    if env.get("STGCMA_AUTH_FILE"):
        where = f"STGCMA_AUTH_FILE ({env['STGCMA_AUTH_FILE']})"
        try:
            items = Path(env["STGCMA_AUTH_FILE"]).read_text().splitlines()  # a password may hold commas here
        except OSError as err:
            raise SystemExit(f"cannot read {where}: {err.strerror or err}") from None
    logins = []
    for item in items:
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not (sep and user.strip() and password):
            raise SystemExit(f"{where}: every login must look like user:password (got one without a user or "
                             "a password)")
        logins.append((user.strip(), password))
    return logins


def access(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[bool, list[tuple[str, str]]]:
    """(training on?, logins); refuses (SystemExit) training on a public address without a login."""
    training = bool(args.enable_training) or env.get("STGCMA_ENABLE_TRAINING", "").strip().lower() in TRUE
    logins = read_auth(env)
    if training and is_public(args, env) and not logins:
        where = "a public gradio.live link" if args.share else f"{bind_address(args, env)}"
        raise SystemExit(f"Refusing to enable training on {where} without a login: anyone who can reach the app "
                         "could run jobs on this machine. Set STGCMA_AUTH=user:password or STGCMA_AUTH_FILE=PATH "
                         "(one user:password per line), or listen on 127.0.0.1 only.")
    return training, logins


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    training, logins = access(args, os.environ)
    from app.main import CSS, EXAMPLES_DIR, THEME, build_demo, make_context, queue_settings
    from app.state import AppLimits
    from stgcma.inference import available_devices

    device = args.device
    if device == "auto":
        device = "cuda" if available_devices()["cuda"] else "cpu"
    limits = AppLimits(max_file_mb=args.max_file_mb, max_duration_s=args.max_duration, queue_size=args.queue_size,
                       concurrency=args.concurrency, max_results=max(1, args.max_results))
    ctx = make_context(args.checkpoint, device, runs=args.runs, examples=args.examples or EXAMPLES_DIR,
                       limits=limits, training=training, max_jobs=args.max_jobs, models=args.models)
    logging.getLogger("stgcma.app").info("%s Training %s.", limits.text(), "on" if training else "off")
    demo = build_demo(ctx)
    launch: dict = {"theme": THEME, "css": CSS, "share": args.share, "server_port": args.port,
                    "max_file_size": limits.max_file_mb * 1_000_000, "auth": logins or None}
    if args.host or not (os.environ.get("SPACE_ID") or os.environ.get("GRADIO_SERVER_NAME")):
        launch["server_name"] = bind_address(args, os.environ)
    demo.queue(**queue_settings(limits)).launch(**launch)


if __name__ == "__main__":
    main()
