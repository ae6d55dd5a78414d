"""docker-compose.yml, checked without a Docker engine: the default services are unchanged by
the "ray" profile, every reference resolves, the Ray services share the API's database and
data folder, workers reach the head where it listens, and every `rag` command in the file
parses with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from rag.cli import build_parser

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def commands(service: dict) -> list[list[str]]:
    """The `rag` and `ray` commands a service runs (its `sh -c` line split at &&)."""
    cmd = service["command"]
    line = cmd[2] if cmd[:2] == ["sh", "-c"] else shlex.join(cmd)
    return [shlex.split(part.replace("exec ", "", 1)) for part in line.split("&&")]


def test_the_default_topology_is_unchanged_and_ray_is_a_profile():
    assert {n for n, s in SERVICES.items() if "profiles" not in s} == {"postgres", "api", "ui"}
    assert {n for n, s in SERVICES.items() if s.get("profiles") == ["ray"]} == {"ray-head", "ray-worker"}


def test_every_reference_resolves():
    for name, s in SERVICES.items():
        deps = s.get("depends_on", [])
        assert set(deps) <= set(SERVICES), name
        for v in s.get("volumes", []):
            assert v.split(":")[0] in COMPOSE["volumes"], (name, v)


def test_ray_services_share_the_database_the_data_folder_and_the_head():
    api, head, worker = SERVICES["api"]["environment"], SERVICES["ray-head"], SERVICES["ray-worker"]
    for s in (head, worker):
        assert s["environment"]["RAG_DATABASE_URL"] == api["RAG_DATABASE_URL"]  # one PostgreSQL
        assert s["environment"]["RAG_DATA_DIR"] == "/data" and "ragdata:/data" in s["volumes"]  # one index store
    port = re.search(r"--port=(\d+)", head["command"][2]).group(1)
    assert f"--address=ray-head:{port}" in worker["command"][2]


def test_every_rag_command_parses_with_the_cli():
    parser = build_parser()
    seen = []
    for name, s in SERVICES.items():
        for argv in commands(s) if "command" in s else []:
            if argv[0] == "rag":
                args = parser.parse_args([a.replace("$${API_REPLICAS:-2}", "2") for a in argv[1:]])
                seen.append((name, args.command))
    assert ("ray-head", "ingest") in seen and ("ray-head", "serve") in seen and ("api", "serve") in seen
    head = [a for a in commands(SERVICES["ray-head"]) if a[:2] == ["rag", "serve"]][0]
    assert "--replicas" in head and head[head.index("--ray") + 1] == "auto"
