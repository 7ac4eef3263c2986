"""Benchmark: `offboard status` and `offboard verify` over synthetic evidence (2,000 hosts x 50 tasks).

Builds a throw-away evidence store shaped like real runs (records.jsonl, packed job events, metadata,
sealed manifests and chain), then times the two commands in subprocesses and reports wall time and
peak RSS. Run twice with a different number of runs to show memory does not grow with the events:

    python benchmarks/bench_evidence.py --hosts 2000 --tasks 50 --runs 1
    python benchmarks/bench_evidence.py --hosts 2000 --tasks 50 --runs 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from offboard import manifest
from offboard.evidence import EvidenceStore, RunMetadata, write_metadata
from offboard.fsutil import open_private
from offboard.records import Record

# What every synthetic run and record shares; the loop below adds what differs per run, host and task.
META = {"client": "bench", "source": "wrapper", "command": "run", "operator": "bench", "status": "complete"}
ITEM = {
    "component": "rmm_agent",
    "after": {"found": False},
    "verification": {"method": "probe", "result": "verified_absent"},
    "task": "RMM | record | evidence",
}


def record(run_id: str, kind: str, recorded_at: str, **fields: Any) -> str:
    """One records.jsonl line of the bench client's agents phase."""
    line = Record(kind=kind, run_id=run_id, client="bench", phase="agents", recorded_at=recorded_at, **fields)
    return line.to_json() + "\n"


def job_event(counter: int, host: str, task: str) -> str:
    """One packed job event, as the runner writes them."""
    data = {"host": host, "task": task, "res": {"changed": False}}
    return json.dumps({"event": "runner_on_ok", "counter": counter, "event_data": data}) + "\n"


def build(root: Path, hosts: int, tasks: int, runs: int) -> int:
    store = EvidenceStore(root)
    names = [f"host{n:05d}" for n in range(hosts)]
    events = 0
    for r in range(runs):
        run_dir = store.new_run("bench", f"20260101T{r:06d}.000Z-b{r:05d}")
        run_id = run_dir.name
        meta = RunMetadata(
            run_id=run_id, started_at="2026-01-01T00:00:00Z", complete=True, hosts=names, **META
        )
        write_metadata(run_dir, meta)
        (run_dir / "artifacts").mkdir(mode=0o700)
        with (
            open_private(run_dir / "records.jsonl", "w") as rec,
            open_private(run_dir / "artifacts" / "job_events.jsonl", "w") as ev,
        ):
            rec.write(record(run_id, "phase_start", "2026-01-01T00:00:00Z", hosts=names))
            for t in range(tasks):
                for host in names:
                    fields = {
                        "host": host,
                        "item": f"product{t:02d}",
                        "action": "removed" if r == 0 else "none",
                    }
                    before = {"found": r == 0, "paths": [f"/opt/p{t}"]}
                    rec.write(record(run_id, "item", "2026-01-01T00:00:01Z", before=before, **fields, **ITEM))
                    ev.write(job_event(events, host, f"RMM | record | product{t:02d}"))
                    events += 1
            for host in names:
                rec.write(record(run_id, "phase_end", "2026-01-01T00:00:02Z", host=host, outcome="ok"))
        (run_dir / "artifacts" / "stdout").write_text("synthetic\n")
        manifest.seal(run_dir)
    return events


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one command."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); w = time.perf_counter() - t;"
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=True
    )
    wall, rss, rc = out.stdout.split()
    return float(wall), float(rss), int(rc)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the synthetic store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="offboard-bench-") as tmp:
        root = Path(tmp) / "evidence"
        start = time.perf_counter()
        events = build(root, args.hosts, args.tasks, args.runs)
        built = time.perf_counter() - start
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        # `status` and `verify` need a project for client-name checks; a client known only by its
        # evidence is accepted, so point the project at this repository.
        env = {**os.environ, "OFFBOARD_EVIDENCE_DIR": str(root)}
        offboard = [sys.executable, "-m", "offboard.cli"]
        results = {}
        for name, argv in (
            ("status", [*offboard, "status", "bench"]),
            ("status --json", [*offboard, "status", "bench", "--json"]),
            ("verify", [*offboard, "verify", "bench"]),
        ):
            results[name] = timed(argv, env)
        print(
            f"synthetic evidence: {args.hosts} hosts x {args.tasks} tasks x {args.runs} run(s): "
            f"{events:,} events, {events + 2 * args.hosts * args.runs:,} records, {size:,.0f} MiB "
            f"(built in {built:.1f} s)"
        )
        for name, (wall, rss, rc) in results.items():
            print(f"  offboard {name:<14} {wall:6.2f} s   peak RSS {rss:7.1f} MiB   exit {rc}")
        if args.keep:
            os.rename(root, Path.cwd() / "bench-evidence")
    _ = resource
    return 0


if __name__ == "__main__":
    sys.exit(main())
