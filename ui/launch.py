"""`rag ui`: start the Streamlit front end (ui/app.py) against a running API.

The UI process gets the API's address and key through its environment (RAG_API_URL,
RAG_API_KEY): it never reads Settings or loads models itself."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def cmd_ui(args) -> int:
    from rag.config import Settings

    s = Settings()
    key = s.api_key or s.admin_key
    env = {**os.environ, "RAG_API_URL": args.api or s.api_url,
           "RAG_API_KEY": key.get_secret_value() if key else ""}
    cmd = [sys.executable, "-m", "streamlit", "run", str(Path(__file__).with_name("app.py")),
           "--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--global.developmentMode", "false", "--client.toolbarMode", "viewer",
           # a bug's message, never its traceback (server paths) on the page; the traceback goes to the log
           "--client.showErrorDetails", "type",
           # the uploader's own limit matches the API's, so a too-large file is refused before it is sent
           "--server.maxUploadSize", str(max(1, math.ceil(s.max_upload_mb)))]
    # exec, not a child process: whoever started `rag ui` (a script, a test, compose) then
    # holds streamlit's own pid, and stopping it leaves no orphan server behind.
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


def register(sub) -> None:
    a = sub.add_parser("ui", help="run the Streamlit front end (needs `rag serve` running)")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8501)
    a.add_argument("--api", default=None, help="API URL (default: RAG_API_URL or http://127.0.0.1:8000)")
    a.set_defaults(fn=cmd_ui)
