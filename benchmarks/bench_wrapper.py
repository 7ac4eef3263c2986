"""Benchmark: wrapper overhead over plain ansible-playbook on the lab, measured side by side in one run.

Rehearsals (--check) so the lab is not changed and every repetition does the same work:
  1. the agents phase on the whole lab client: `ansible-playbook offboard.yml -l lab --tags agents --check`
     vs `offboard run lab --tags agents --check`, at least 5 pairs, the order flipped every pair;
  2. what the offline laptop costs: its preflight probe time (from the run's metadata);
  3. with --one-machine: the same comparison limited to one host (what `offboard retry` runs for one
     pending machine: a run with limit = that host and tags = its missing phases).
Each run's wall time and the CPU time of its whole process tree (the command, ansible-playbook and its
workers) are reported, and per pair the ratio wrapper / plain: the median ratio and its spread (lowest to
highest pair) for wall and CPU. The goal of issue 18 is at most 1.05x. Both sides keep evidence (the
evidence callback loads under plain ansible-playbook too), in a temporary store.
Takes the lab lock (/tmp/offboard-lab.lock) like the integration tests: the lab and the CPU are shared.
Needs the lab up (`offboard lab up`). Prints the tables; with --out FILE also writes them there
(docs/performance-wrapper.md keeps the last measurement).

    python benchmarks/bench_wrapper.py --reps 5
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = "/tmp/offboard-lab.lock"
GOAL = 1.05


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) of the whole process tree, exit code.

    The CPU covers the command, ansible-playbook and every worker it forked (all are reaped before
    the command ends); not the docker daemon or the lab's containers, which serve both sides alike."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def compare(label: str, plain: list[str], wrapped: list[str], env: dict[str, str], reps: int) -> dict:
    """Pairs of runs; the order flips every repetition (plain first, then wrapper first) so a lab that
    slows down or speeds up during the benchmark does not favour either side."""
    times: dict[str, list[float]] = {"plain": [], "wrapper": []}
    cpus: dict[str, list[float]] = {"plain": [], "wrapper": []}
    pairs: list[float] = []
    wall_ratios: list[float] = []
    cpu_ratios: list[float] = []
    for rep in range(reps):
        order = [("plain", plain), ("wrapper", wrapped)]
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for name, argv in order if rep % 2 == 0 else order[::-1]:
            wall[name], cpu[name], rc = timed(argv, env)
            times[name].append(wall[name])
            cpus[name].append(cpu[name])
            print(
                f"  {label:<28} {name:<8} {wall[name]:6.2f} s  cpu {cpu[name]:6.2f} s  exit {rc}", flush=True
            )
        pairs.append((wall["wrapper"] - wall["plain"]) / wall["plain"] * 100)
        wall_ratios.append(wall["wrapper"] / wall["plain"])
        cpu_ratios.append(cpu["wrapper"] / cpu["plain"])
    p, w = statistics.median(times["plain"]), statistics.median(times["wrapper"])
    return {
        "label": label,
        "plain": p,
        "wrapper": w,
        "overhead": (w - p) / p * 100,
        "paired": statistics.median(pairs),
        "pairs": pairs,
        "times": times,
        "cpu": {name: statistics.median(values) for name, values in cpus.items()},
        "wall_ratio": (statistics.median(wall_ratios), min(wall_ratios), max(wall_ratios)),
        "cpu_ratio": (statistics.median(cpu_ratios), min(cpu_ratios), max(cpu_ratios)),
    }


def ratio_table(results: list[dict]) -> list[str]:
    """Per comparison: median wrapper/plain ratio of the pairs, with the lowest and highest pair."""
    lines = [
        f"| comparison | pairs | wall ratio (median, lowest-highest) | CPU ratio (median, lowest-highest) "
        f"| goal <= {GOAL:.2f}x |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        (wm, wlo, whi), (cm, clo, chi) = r["wall_ratio"], r["cpu_ratio"]
        met = "met" if wm <= GOAL and cm <= GOAL else "missed"
        lines.append(
            f"| {r['label']} | {len(r['pairs'])} | {wm:.3f}x ({wlo:.3f}-{whi:.3f}) "
            f"| {cm:.3f}x ({clo:.3f}-{chi:.3f}) | {met} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="pairs per comparison (at least 5)")
    parser.add_argument("--host", default="lab-ws01", help="the one machine for comparison 3")
    parser.add_argument("--one-machine", action="store_true", help="also compare runs limited to --host")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args()
    if args.reps < 5:
        parser.error("--reps: at least 5 pairs, or the spread says nothing")
    with open(LOCK, "w") as lock:
        print(f"waiting for the lab lock {LOCK} ...", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    bindir = str(Path(sys.executable).parent)
    with tempfile.TemporaryDirectory(prefix="offboard-bench-") as tmp:
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "OFFBOARD_EVIDENCE_DIR": tmp}
        playbook = [f"{bindir}/ansible-playbook", "offboard.yml", "--tags", "agents", "--check"]
        offboard = [sys.executable, "-m", "offboard.cli", "run", "lab", "--tags", "agents", "--check"]
        results = [compare("whole lab client", [*playbook, "-l", "lab"], offboard, env, args.reps)]
        if args.one_machine:
            results.append(
                compare(
                    f"one machine ({args.host})",
                    [*playbook, "-l", args.host],
                    [*offboard, "--limit", args.host],
                    env,
                    args.reps,
                )
            )
        laptop = []
        for run in sorted(Path(tmp, "lab").iterdir()):
            meta = run / "metadata.json"
            if meta.is_file():
                pre = json.loads(meta.read_text()).get("preflight", {}).get("lab-laptop01")
                if pre and pre["state"] != "reachable":
                    laptop.append(float(pre["seconds"]))
    lines = ["", *ratio_table(results), ""]
    lines += [
        "| comparison | plain ansible-playbook (median) | offboard run (median) | overhead of medians "
        "| median of paired overheads |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['plain']:.2f} s | {r['wrapper']:.2f} s | {r['overhead']:+.1f} % "
            f"| {r['paired']:+.1f} % |"
        )
    lines += [
        "",
        "| comparison | CPU of the process tree, plain (median) | offboard run (median) | difference |",
    ]
    lines.append("|---|---|---|---|")
    for r in results:
        p, w = r["cpu"]["plain"], r["cpu"]["wrapper"]
        lines.append(
            f"| {r['label']} | {p:.1f} s | {w:.1f} s | {w - p:+.1f} s ({(w - p) / p * 100:+.1f} %) |"
        )
    lines.append("")
    lines.append("```")
    for r in results:
        lines.append(f"{r['label']}:")
        for name in ("plain", "wrapper"):
            lines.append(f"  {name:<8} wall " + " / ".join(f"{t:.2f}" for t in r["times"][name]) + " s")
        lines.append("  pairs    " + " / ".join(f"{p:+.1f}" for p in r["pairs"]) + " %")
    lines.append("```")
    if laptop:
        lines.append(
            f"\noffline laptop: preflight classified it unreachable in {max(laptop):.3f} s (max of "
            f"{len(laptop)} runs); the playbook then runs without it (no per-task timeouts)."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
