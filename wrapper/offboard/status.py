"""`offboard status`: the ledger of one client (or, with --all, every client at a glance).

By default one summary row per host (done / pending / failed counts, last seen) and every item that is not
done; `--items` lists every row of the ledger. `--json` prints the whole ledger (docs/cli-json.md).
"""

from __future__ import annotations

import argparse
import sys

from offboard import cmdshared, jsonout, ledger
from offboard.errors import EXIT_OK, UsageError
from offboard.evidence import EvidenceStore, active_runs
from offboard.helptext import add_command
from offboard.progress import write_table

_ITEM_KEYS = ("host", "phase", "component", "item", "state", "at", "run_id", "reason")
_ITEM_HEADERS = ["HOST", "PHASE", "COMPONENT", "ITEM", "STATE", "SINCE", "RUN", "REASON"]
_DONE = (ledger.REMOVED, ledger.ABSENT)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "status")
    p.add_argument("client", metavar="CLIENT", nargs="?", help="client name (omit with --all)")
    cmdshared.add_evidence_dir(p)
    p.add_argument("--all", action="store_true", help="every client of the store and the inventories")
    p.add_argument("--items", action="store_true", help="every item of the ledger, done ones too")
    jsonout.add_flag(p)
    p.set_defaults(func=cmd_status)


def _run_notes(store: EvidenceStore, client: str) -> tuple[list[str], list[str], list[str]]:
    """(incomplete, unsealed, active) run ids: runs that are not (yet) evidence, and why."""
    active = active_runs(store, client)
    unsealed = [r for r in store.run_ids(client) if not store.is_sealed(client, r) and r not in active]
    finished = {m.run_id for m in store.runs(client) if not m.complete and m.run_id not in active}
    return sorted(finished | set(unsealed)), unsealed, sorted(active)


def cmd_status(args: argparse.Namespace) -> int:
    project = cmdshared.project()
    store = cmdshared.store(args)
    if args.all == bool(args.client):
        raise UsageError("give one CLIENT, or --all for every client (not both)")
    if args.all:
        from offboard import fleet

        return fleet.print_fleet(fleet.fleet(store, project / "inventories"), args.json)
    cmdshared.client_known(args.client, project, store)
    folded = cmdshared.fold(store, args.client)
    incomplete, unsealed, active = _run_notes(store, args.client)
    if args.json:
        return jsonout.emit(
            "status",
            folded.exit_code(),
            {
                "scope": "client",
                "client": folded.client,
                "runs": len(set(folded.runs)),
                "counts": folded.counts(),
                "hosts": folded.host_summary(),
                "pending": folded.pending(),
                "incomplete_runs": incomplete,
                "unsealed_runs": unsealed,
                "active_runs": active,
                "rows": list(folded.rows()),
            },
        )
    runs = list(store.runs(args.client))
    if not runs:
        print(f"no evidence yet for client {args.client} in {store.root}")
        return EXIT_OK
    last = runs[-1]
    print(
        f"client {args.client}: {len(runs)} run(s), last {last.run_id} ({last.command}, {last.status}"
        f"{', check mode' if last.check_mode else ''})"
    )
    for run_id in incomplete:
        if run_id in unsealed:
            print(f"  run {run_id} is UNSEALED: not evidence, not counted (`offboard verify` fails on it)")
        else:
            print(f"  run {run_id} is INCOMPLETE (ended before ansible's final stats)")
    for run_id in active:
        print(f"  run {run_id} is in progress")
    _print_ledger(folded, args.items)
    return folded.exit_code()


def _print_ledger(folded: ledger.Ledger, all_items: bool) -> None:
    out = sys.stdout
    out.write("\n")
    write_table(
        out,
        ["HOST", "DONE", "PENDING", "FAILED", "LAST SEEN"],
        [
            (h["host"], h["done"], h["pending"], h["failed"], h.get("last_seen", ""))
            for h in folded.host_summary()
        ],
    )
    rows = [r for r in folded.rows() if all_items or r["state"] not in _DONE]
    if rows:
        out.write("\nITEMS:\n" if all_items else "\nITEMS NOT DONE (--items lists them all):\n")
        write_table(out, _ITEM_HEADERS, [tuple(r[k] for k in _ITEM_KEYS) for r in rows])
    else:
        out.write("\nevery item done\n" if not all_items else "\nno items\n")
    out.write("\n" + ", ".join(f"{v} {k}" for k, v in folded.counts().items()) + "\n")
    pending = folded.pending()
    if pending:
        out.write(
            f"\nPENDING ({len(pending)} host-phase(s); "
            f"`offboard retry {folded.client}` reruns exactly these):\n"
        )
        write_table(
            out,
            ["HOST", "PHASE", "STATE", "SINCE", "REASON"],
            [(p["host"], p["phase"], p["state"], p["since"], p["reason"]) for p in pending],
        )
    else:
        out.write("\nnothing pending\n")
