"""Benchmark: a check-mode agents phase on hosts with nothing to remove, old code vs new, side by side.

What a rehearsal of `--tags agents` costs per host when the MSP left nothing there (the common case once
a device is done, and on every retry): tasks executed and skipped per host in the agents play, and CPU
seconds per host of the whole controller process tree (ansible-playbook and every worker it forked, from
RUSAGE_CHILDREN) plus the CPU the targets spent (their containers' cgroup cpu.stat), over both
transports the lab has:
  - docker_api: N containers of the lab image, --network none (as the lab);
  - ssh: N containers with --network host and sshd on their own 127.0.13.x:2222 (as lab-srv03), reached
    with a throw-away key, ControlPersist and pipelining from ansible.cfg.
Nothing is planted on them. The client inventory is each tree's own lab group_vars (products, security,
backup, scheduled tasks, GPO settings), so every agents role does its full discovery. Each tree (`--old`,
default /work/main, and this checkout) runs with its own ansible.cfg, roles and plugins; records go to a temp
folder (the wrapper's mode of the evidence callback), so neither tree is written to.

    python benchmarks/bench_agents.py --hosts 3 --reps 2 [--old /work/main]

Takes the lab lock (/tmp/offboard-lab.lock), since the CPU is shared with the lab tests. Prints a
markdown table (paste into docs/performance.md).
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

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "wrapper"))

from offboard import lab as lab_mod  # noqa: E402

LOCK = "/tmp/offboard-lab.lock"
PREFIX = "field-bench"


def containers(n: int, tmp: Path) -> dict[str, dict]:
    """Start n docker_api and n ssh bench containers; returns inventory host vars per host."""
    lab_mod.ensure_docker()
    tag = lab_mod.ensure_image(log=lambda _m: None)
    key = tmp / "bench_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts: dict[str, dict] = {}
    for i in range(1, n + 1):
        for kind in ("api", "ssh"):
            name = f"{PREFIX}-{kind}{i}"
            listen = f"127.0.13.{i + 1}:2222" if kind == "ssh" else ""
            host = lab_mod.LabHost(
                name, name, False, network="host" if listen else "none", sshd_listen=listen
            )
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
            lab_mod.ensure_container(host, tag, plant_id="bench")
            if kind == "api":
                hosts[name] = {"ansible_host": name, "ansible_connection": "community.docker.docker_api"}
            else:
                hosts[name] = {
                    "ansible_connection": "ssh",
                    "ansible_host": listen.split(":")[0],
                    "ansible_port": 2222,
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(key),
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                }
    pub = key.with_suffix(".pub").read_text()
    for name in hosts:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True
            ).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        if "ssh" in name:
            keys = "/root/.ssh/authorized_keys"
            script = f"mkdir -p /root/.ssh && printf %s '{pub}' > {keys} && chmod 600 {keys}"
            subprocess.run(["docker", "exec", name, "sh", "-c", script], check=True)
    return hosts


def inventory(tmp: Path, hosts: dict[str, dict], group: str, tree: Path) -> Path:
    """The bench client for one tree: the lab's client facts as that tree writes them (the input names
    changed between versions, e.g. offboard_msp_agents -> offboard_msp_products; the facts are the same)."""
    client = tmp / "inventories" / "bench"
    (client / "group_vars").mkdir(parents=True, exist_ok=True)
    chosen = {h: v for h, v in hosts.items() if f"-{group}" in h}
    data = {"bench": {"vars": {"ansible_python_interpreter": "/usr/bin/python3"}, "hosts": chosen}}
    (client / "hosts.yml").write_text(yaml.safe_dump(data))
    lab_vars = yaml.safe_load((tree / "inventories/lab/group_vars/lab.yml").read_text())
    lab_vars.update(offboard_client_id="bench", offboard_client_name="Benchmark client")
    (client / "group_vars" / "bench.yml").write_text(yaml.safe_dump(lab_vars))
    return client


def cgroup_usec(name: str) -> int:
    cid = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True
    ).stdout.strip()
    for path in (
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat",
        f"/sys/fs/cgroup/docker/{cid}/cpu.stat",
    ):
        if os.path.exists(path):
            for line in Path(path).read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1])
    # cgroup v1 (hybrid hierarchy, as on this machine): nanoseconds in cpuacct.usage.
    usage = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    if usage.exists():
        return int(usage.read_text().strip()) // 1000
    return 0


def one_run(tree: Path, inv: Path, hosts: list[str], tmp: Path, label: str) -> dict:
    run_dir = tmp / f"records-{label}-{time.monotonic_ns()}"
    run_dir.mkdir()
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(tree / "ansible.cfg"),
        PYTHONPATH=str(tree / "wrapper"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        # A plain run with its own store: the guard refuses a wrapper's run folder that no wrapper set.
        OFFBOARD_EVIDENCE_DIR=str(run_dir),
    )
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inv),
        "offboard.yml",
        "-l",
        "bench",
        "--tags",
        "agents",
        "--check",
    ]
    targets_before = {h: cgroup_usec(h) for h in hosts}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    target_cpu = sum(cgroup_usec(h) - targets_before[h] for h in hosts) / 1e6
    # raw_decode: the evidence callback's closing line ("offboard evidence: <folder>") follows the JSON.
    out, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
    executed = {h: 0 for h in hosts}
    names: list[str] = []  # the tasks the first host executed, for the breakdown
    skipped = {h: 0 for h in hosts}
    failed = 0
    for play in out["plays"]:
        if "agents" not in play["play"]["name"].lower():
            continue
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if host not in executed:
                    continue
                if res.get("skipped"):
                    skipped[host] += 1
                else:
                    executed[host] += 1
                    if host == hosts[0]:
                        names.append(task["task"]["name"])
                    failed += bool(res.get("failed"))
    records = [
        line for f in sorted(run_dir.glob("bench/*/records.jsonl")) for line in f.read_text().splitlines()
    ]
    actions = sorted({json.loads(r).get("action") for r in records if '"kind":"item"' in r.replace(" ", "")})
    return {
        "rc": proc.returncode,
        "wall": wall,
        "cpu": cpu,
        "target_cpu": target_cpu,
        "executed": max(executed.values()),
        "skipped": max(skipped.values()),
        "failed": failed,
        "actions": actions,
        "tasks": names,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=3, help="hosts per transport (default 3)")
    parser.add_argument("--reps", type=int, default=2, help="runs per tree and transport (median kept)")
    parser.add_argument("--old", type=Path, default=Path("/work/main"), help="the tree with the old code")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="unmeasured runs per tree and transport first (default 1): the containers' boot tail, the "
        "page cache and each tree's first .pyc writes otherwise land in the first measured run",
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": REPO}
    rows = []
    with open(LOCK, "w") as lock, tempfile.TemporaryDirectory(prefix="bench-agents-") as tmpdir:
        print("waiting for the lab lock ...", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The CPU seconds per unit of work drift with the machine's load: say what it was.
        load_start = os.getloadavg()
        tmp = Path(tmpdir)
        hosts = containers(args.hosts, tmp)
        try:
            for transport in ("api", "ssh"):
                inv = {
                    label: inventory(tmp / transport / label, hosts, transport, tree)
                    for label, tree in trees.items()
                }
                names = [h for h in hosts if f"-{transport}" in h]
                results: dict[str, list[dict]] = {"old": [], "new": []}
                for _ in range(args.warmup):
                    for label in ("old", "new"):
                        res = one_run(trees[label], inv[label], names, tmp, f"{label}-{transport}")
                        note = f"(warm-up, not counted): cpu {res['cpu']:.2f}"
                        print(f"  {transport} {label} {note}", flush=True)
                for rep in range(args.reps):
                    for label in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                        res = one_run(trees[label], inv[label], names, tmp, f"{label}-{transport}")
                        results[label].append(res)
                        shown = {k: v for k, v in res.items() if k != "tasks"}
                        print(f"  {transport} {label}: {json.dumps(shown)}", flush=True)
                        if rep == 0:
                            print("    executed: " + " / ".join(res["tasks"]), flush=True)
                for label in ("old", "new"):
                    runs = results[label]
                    n = len(names)
                    rows.append(
                        {
                            "transport": "docker_api" if transport == "api" else "ssh",
                            "code": label,
                            "executed": runs[0]["executed"],
                            "skipped": runs[0]["skipped"],
                            "cpu_host": statistics.median(r["cpu"] for r in runs) / n,
                            "cpu_range": (min(r["cpu"] for r in runs) / n, max(r["cpu"] for r in runs) / n),
                            "target_host": statistics.median(r["target_cpu"] for r in runs) / n,
                            "wall": statistics.median(r["wall"] for r in runs),
                            "failed": max(r["failed"] for r in runs),
                        }
                    )
        finally:
            if not args.keep:
                for name in hosts:
                    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    load_end = os.getloadavg()
    print(
        f"\n{args.hosts} hosts per transport, {args.warmup} warm-up run(s) then {args.reps} measured runs "
        "each (median; the controller CPU's range beside it), check mode, nothing to remove; "
        f"load average (1 min) {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end\n"
    )
    print(
        "| transport | code | tasks executed / host | skipped / host | controller CPU s / host "
        "| (range) | target CPU s / host | total CPU s / host | wall s (run) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["cpu_host"] + r["target_host"]
        print(
            f"| {r['transport']} | {r['code']} | {r['executed']} | {r['skipped']} | {r['cpu_host']:.2f} "
            f"| {r['cpu_range'][0]:.2f}-{r['cpu_range'][1]:.2f} | {r['target_host']:.2f} | {total:.2f} "
            f"| {r['wall']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
