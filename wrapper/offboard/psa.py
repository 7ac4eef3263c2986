"""The PSA as the plan's trigger and its audience (issue 17).

In: a PSA webhook (ConnectWise company callback, HaloPSA webhook, or any PSA described by a YAML file)
is authenticated, its delivery id checked against the ones already handled, its fields read where that
PSA's YAML says they are, and its company id mapped to a client folder (offboard_psa in the client's
inventory). Out: when a step of the plan completes, a note is posted to the PSA's REST API, retried with
backoff; each call is a `psa_update` record in the client's evidence. A PSA that fails never blocks the
offboarding: the call is recorded as failed and tried again by the next sync.

The shipped PSA files live next to this module (psa/*.yml); $OFFBOARD_PSA_CONFIG_DIR (or
`offboard serve --psa-config DIR`) adds or replaces files by name. Secrets are named by environment
variable in those files, never written in them, and never printed or recorded.

Parts: psa_config.py (PSA files, payload fields, deliveries, client mapping), psa_auth.py (inbound
authentication), psa_api.py (outbound calls); this module holds the sync of completed steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from offboard.fsutil import locked
from offboard.psa_api import CallResult, api_configured, backoff_base, post_status, scrub, secrets
from offboard.psa_auth import _key_url_allowed, authenticate, connectwise_signature, trusted_key_urls
from offboard.psa_config import (
    CONFIG_DIR,
    DELIVERIES,
    Delivery,
    DeliveryLog,
    Link,
    PsaConfig,
    PsaError,
    config_dirs,
    find_client,
    inventory_link,
    load_configs,
    lookup,
    parse_config,
    read_delivery,
)

__all__ = [
    "CONFIG_DIR",
    "DELIVERIES",
    "CallResult",
    "Delivery",
    "DeliveryLog",
    "Link",
    "PsaConfig",
    "PsaError",
    "_key_url_allowed",
    "api_configured",
    "authenticate",
    "backoff_base",
    "config_dirs",
    "connectwise_signature",
    "find_client",
    "inventory_link",
    "load_configs",
    "lookup",
    "now_iso",
    "parse_config",
    "plan_link",
    "post_status",
    "read_delivery",
    "scrub",
    "secrets",
    "step_note",
    "sync_client",
    "trusted_key_urls",
]


def now_iso() -> str:
    from offboard import plan as planlib

    return planlib.iso_utc(planlib.now())


def step_note(client: str, step_id: str, title: str, done_at: str, evidence: str) -> str:
    return f"offboard: client {client}, step {step_id} {title}: done {done_at}" + (
        f" ({evidence})" if evidence else ""
    )


def plan_link(
    plan: Mapping[str, Any] | None, values: Mapping[str, Any], configs: dict[str, PsaConfig]
) -> Link | None:
    """The PSA record of the client: the one that started the plan, else the inventory's first."""
    rec = (plan or {}).get("psa") or {}
    if rec.get("psa") in configs and rec.get("company_id"):
        inv = inventory_link(values, configs[rec["psa"]])
        ticket = str(rec.get("ticket_id") or (inv.ticket_id if inv else ""))
        return Link(str(rec["psa"]), str(rec["company_id"]), ticket)
    for cfg in configs.values():
        link = inventory_link(values, cfg)
        if link:
            return link
    return None


def sync_client(
    store: Any, client: str, extra: Path | None = None, quiet: bool = False, out: TextIO | None = None
) -> list[dict[str, Any]]:
    """Post every completed step the PSA has not confirmed yet; record each call. Never raises.

    One line per call (and why the sync was skipped) goes to `out` (default stdout) unless quiet."""
    from offboard import checklist, ledger
    from offboard import plan as planlib

    try:
        configs = load_configs(extra)
        if not any(api_configured(c) for c in configs.values()):
            return []  # no PSA API to talk to: nothing to read (runs and reminders stay as fast as before)
        project = checklist._project()
        cvars = checklist.load_client_vars(client, project)
        hist = checklist.read_history(store, client)
        if hist.plan is None:
            return []
        link = plan_link(hist.plan, cvars.values, configs)
        if link is None or not api_configured(configs[link.psa]):
            return []
        cfg = configs[link.psa]
        process = planlib.load_process()
        ctx = checklist.Context(
            client, process, hist, checklist._hosts(client, project), cvars, planlib.now().date()
        )
        hist.ledger = hist.ledger or ledger.Ledger(client)
        reported = {r.get("step") for r in hist.psa_updates if r.get("ok")}
        last_error = {r.get("step"): r.get("error", "") for r in hist.psa_updates}
        records = []
        for st in checklist.step_states(ctx):
            if not st.done or st.id in reported:
                continue
            text = step_note(client, st.id, st.title, st.done_at, st.evidence)
            res = post_status(cfg, link, text)
            if res.error.startswith("not configured") and last_error.get(st.id) == res.error:
                continue  # the same configuration gap, already on record: not one more record per run
            rec = {
                "kind": "psa_update",
                "step": st.id,
                "title": st.title,
                "psa": cfg.name,
                "company_id": link.company_id,
                "ticket_id": link.ticket_id,
                "target": res.target,
                "request": res.request,
                "http_status": res.http_status,
                "attempts": res.attempts,
                "ok": res.ok,
                "error": res.error,
                "recorded_at": now_iso(),
            }
            records.append(rec)
            if not quiet:
                print(
                    f"{client}: step {st.id} -> {cfg.name}: "
                    + (
                        f"ok HTTP {res.http_status}"
                        if res.ok
                        else f"not posted ({res.error}); retried next sync"
                    ),
                    file=out,
                )
        if records:
            with locked(store.client_dir(client) / checklist.CHECKLIST_LOCK):
                checklist.write_checklist_run(store, client, "psa-sync", records)
        return records
    except Exception as exc:  # a PSA problem never blocks the offboarding command that called us
        if not quiet:
            print(f"{client}: PSA status update skipped ({type(exc).__name__}: {exc})", file=out)
        return []
