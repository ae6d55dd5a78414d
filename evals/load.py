"""Load test of `rag serve`: N clients ask, search and upload for a while; figures per endpoint.

`python -m evals.load --data-dir DIR --clients 8 --duration 180` starts `rag serve` on the data
folder (real models unless RAG_BACKEND says otherwise; the sample corpus is ingested first when
the folder is empty), drives it with httpx clients, stops it, and prints JSON: requests,
status codes, p50/p95/p99 per endpoint, answers per second, the server's resident memory at
start and end, and the uploads confirmed. Exits non-zero on any 5xx other than the service's
deliberate 503 at capacity, on a 503 without Retry-After, or on an upload that never shows up
as a document (a lost upload). docs/reliability.md has the runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from rag.metrics import percentile

QUESTIONS = ["Who designed the Harbor Point Lighthouse?", "How tall is the Harbor Point Lighthouse?",
             "When was the Harbor Point Lighthouse light automated?", "한라산의 높이는 얼마인가요?",
             "When did Margaret Ellison die?", "Where is green tea grown in Korea?"]
KEY = "load-test-admin-key"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024


async def client(http, deadline: float, mix: dict, log: list, uploads: list, n: int) -> None:
    rng = random.Random(n)
    headers = {"Authorization": f"Bearer {KEY}"}
    while time.monotonic() < deadline:
        action = rng.choices(list(mix), weights=list(mix.values()))[0]
        t = time.monotonic()
        try:
            if action == "ask":
                r = await http.post("/v1/ask", json={"question": rng.choice(QUESTIONS)}, headers=headers)
            elif action == "search":
                r = await http.post("/v1/search", json={"question": rng.choice(QUESTIONS)}, headers=headers)
            else:
                name = f"load-{n}-{len(uploads)}.txt"
                body = f"Load test note {n}-{len(uploads)}: the beacon of pier {rng.randint(1, 10**6)} is green."
                r = await http.post("/v1/collections/load/documents", files={"files": (name, body.encode())},
                                    headers=headers)
                if r.status_code == 202:
                    uploads.append((name, r.json()["job"]["id"]))
            status = r.status_code
            retry_after = r.headers.get("Retry-After")
        except Exception as e:  # noqa: BLE001 - a timeout or a refused connection is a figure, not a crash
            status, retry_after = type(e).__name__, None
        log.append({"action": action, "status": status, "s": time.monotonic() - t, "retry_after": retry_after})
        if status in (429, 503) and retry_after:
            await asyncio.sleep(min(float(retry_after), 5.0) * rng.uniform(0.5, 1.0))


async def drive(url: str, clients: int, duration: float, timeout: float, mix: dict) -> tuple[list, list, dict]:
    import httpx

    log, uploads = [], []
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 limits=httpx.Limits(max_connections=clients + 4)) as http:
        deadline = time.monotonic() + duration
        await asyncio.gather(*(client(http, deadline, mix, log, uploads, i) for i in range(clients)))
        # every accepted upload must end as a document (its job may still be running)
        headers = {"Authorization": f"Bearer {KEY}"}
        jobs = {}
        for name, job in uploads:
            for _ in range(600):
                j = (await http.get(f"/v1/jobs/{job}", headers=headers)).json()
                if j["status"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.5)
            jobs[name] = j["status"]
        docs = (await http.get("/v1/collections/load/documents", headers=headers)).json().get("documents", [])
        names = {d["name"] for d in docs}
        lost = [n for n in jobs if n not in names]
    return log, uploads, {"uploads": len(uploads), "jobs_done": sum(s == "done" for s in jobs.values()),
                          "lost_uploads": lost}


def summary(log: list, duration: float) -> dict:
    out = {}
    for action in sorted({e["action"] for e in log}):
        rows = [e for e in log if e["action"] == action]
        ok = [e["s"] for e in rows if e["status"] in (200, 202)]
        refused = [e["s"] for e in rows if e["status"] == 503]
        statuses: dict[str, int] = {}
        for e in rows:
            statuses[str(e["status"])] = statuses.get(str(e["status"]), 0) + 1
        out[action] = {"requests": len(rows), "statuses": statuses,
                       "ok_per_s": len(ok) / duration,
                       **{f"ok_p{q}_s": round(percentile(ok, q), 3) if ok else None for q in (50, 95, 99)},
                       "refused_p50_s": round(percentile(refused, 50), 3) if refused else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=180)
    ap.add_argument("--timeout", type=float, default=60, help="each client's request timeout, seconds")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--mix", default="ask=0.7,search=0.25,upload=0.05")
    ap.add_argument("--out", type=Path, help="write the JSON here too")
    args = ap.parse_args(argv)
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    env = {**os.environ, "RAG_DATA_DIR": str(args.data_dir), "RAG_ADMIN_KEY": KEY, "RAG_RATE_LIMIT_PER_MINUTE": "100000"}
    if not (args.data_dir / "rag.db").exists():
        sample = Path(__file__).resolve().parents[1] / "rag" / "data" / "sample"
        subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(sample)], env=env, check=True)
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(args.port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{args.port}"
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"rag serve exited: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        start_mb = rss_mb(server.pid)
        samples, stop = [], threading.Event()

        def sample() -> None:  # the server's resident memory every 5 s: growth shows as a slope
            while not stop.wait(5):
                samples.append(round(rss_mb(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        log, _, uploads = asyncio.run(drive(url, args.clients, args.duration, args.timeout, mix))
        elapsed = time.monotonic() - t0
        stop.set()
        end_mb = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    result = {"clients": args.clients, "duration_s": args.duration, "client_timeout_s": args.timeout, "mix": mix,
              "endpoints": summary(log, args.duration), "server_rss_mb": {"start": round(start_mb), "end": round(end_mb), "max": max(samples, default=0),
                                "every_5s": samples},
              "wall_s": round(elapsed, 1), **uploads}
    bad = [e for e in log if isinstance(e["status"], int) and e["status"] >= 500 and e["status"] != 503]
    bare = [e for e in log if e["status"] == 503 and not e["retry_after"]]
    result["server_errors"], result["503_without_retry_after"] = len(bad), len(bare)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if bad or bare or uploads["lost_uploads"] else 0


if __name__ == "__main__":
    sys.exit(main())
