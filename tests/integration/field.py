"""Field variants: client machines installed the way vendors' installers and technicians really leave
them, planted from the REFERENCE facts (shared/reference/agent_footprints.yaml), never from the catalog.

Each plant step names the reference entry and field it comes from (`Ref`); `check_reference()` proves
that every planted fact is literally in that field of the reference, so a drifted catalog cannot leak in.
The variations are what the catalog does not describe by name: a unit under another name, a package
under another name, a broken or hung uninstaller, agents started from rc.local and from an init.d
script, the client's own second instance of a per-instance tool, and a path that cannot be deleted.

Containers are named field-* (never the lab's names), built from the lab image (offboard-lab:<hash>),
run with --network none and reached through the docker API, like the lab.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from offboard import lab as lab_mod

REFERENCE = Path("/work/shared/reference/agent_footprints.yaml")
FIELD_LABEL = "io.offboard.field"
MSP_SC = "5e0b1c2d3a4f6789"  # the departing MSP's ScreenConnect instance (thumbprint)
CLIENT_SC = "0c1e2a3b4c5d6e7f"  # the client's own ScreenConnect instance: must keep running


@dataclass(frozen=True)
class Ref:
    """A planted fact and where it comes from: reference product (substring), OS, field, the literal."""

    product: str
    os: str
    field: str
    value: str


# Every fact the plant uses, with its reference entry (source keys are the reference's own).
FACTS = {
    "lt_dir": Ref("ConnectWise Automate", "linux", "install_path", "/usr/local/ltechagent"),
    "lt_unit": Ref(
        "ConnectWise Automate", "linux", "systemd_unit", "/usr/lib/systemd/system/ltechagent.service"
    ),
    "lt_sysv": Ref("ConnectWise Automate", "linux", "sysv_links", "update-rc.d ltechagent"),
    "lt_uninstaller": Ref("ConnectWise Automate", "linux", "uninstall", "uninstaller.sh"),
    "trmm_mesh": Ref("Tactical RMM", "linux", "dirs", "/opt/tacticalmesh"),
    "trmm_unit": Ref("Tactical RMM", "linux", "systemd_units", "/lib/systemd/system/meshagent.service"),
    "trmm_uninstall": Ref("Tactical RMM", "linux", "uninstall", "/opt/tacticalmesh/meshagent -uninstall"),
    "datto_agent": Ref("Datto RMM", "linux", "install_path", "/usr/local/share/CentraStage/AEMAgent"),
    "datto_service": Ref("Datto RMM", "linux", "install_path", "/opt/CentraStage"),
    "ninja_dir": Ref("NinjaOne", "linux", "install_path", "/opt/NinjaRMMAgent"),
    "ninja_programdata": Ref("NinjaOne", "linux", "install_path", "/opt/NinjaRMMAgent/programdata"),
    "ninja_package": Ref("NinjaOne", "linux", "packages", "NinjaRMMAgent"),
    "sc_dir": Ref("ScreenConnect", "linux", "install_path", "/opt/screenconnect-<thumbprint>/"),
}


def _reference_products() -> list[dict]:
    return yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))["products"]


def check_reference() -> dict[str, str]:
    """Every planted fact is in its reference field; returns fact -> source key(s) for the report."""
    sources = {}
    for name, ref in FACTS.items():
        product = next(p for p in _reference_products() if ref.product in p["product"])
        field = (product.get(ref.os) or {}).get(ref.field)
        assert field is not None, f"{name}: no {ref.os}.{ref.field} for {ref.product} in the reference"
        assert ref.value in json.dumps(field) or ref.value in str(field), (
            f"{name}: {ref.value!r} not in {field!r}"
        )
        sources[name] = str(field.get("source") if isinstance(field, dict) else product.get("sources"))
    return sources


def fact(name: str) -> str:
    return FACTS[name].value


def sc_dir(instance: str) -> str:
    return fact("sc_dir").replace("<thumbprint>", instance).rstrip("/")


# An agent stand-in: a shell script run by /bin/sh (found by its script path), or a copy of a real
# binary in the vendor folder (found by /proc/<pid>/exe).
AGENT = "#!/bin/sh\n# stand-in for a vendor agent: no vendor code is shipped\nwhile :; do sleep 30; done\n"
BROKEN_UNINSTALLER = (
    "#!/bin/sh\n# a half-upgraded agent's uninstaller: fails before doing anything\n"
    "echo 'corrupt' >&2\nexit 3\n"
)
HUNG_AGENT = (
    "#!/bin/sh\n# meshagent whose -uninstall waits forever for a server that is gone\n"
    'if [ "$1" = -uninstall ]; then sleep 3600; exit 0; fi\nwhile :; do sleep 30; done\n'
)


def _write(path: str, content: str, mode: str = "0755") -> str:
    return (
        f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
        f"printf %s {shlex.quote(content)} > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}"
    )


def _unit(path: str, exec_start: str, description: str) -> str:
    text = (
        f"[Unit]\nDescription={description}\n[Service]\nExecStart={exec_start}\nRestart=always\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    return _write(path, text, "0644")


def _initd(name: str, program: str) -> str:
    text = (
        "#!/bin/sh\n### BEGIN INIT INFO\n"
        f"# Provides: {name}\n# Required-Start: $remote_fs\n# Required-Stop: $remote_fs\n"
        "# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n### END INIT INFO\n"
        f'case "$1" in\n  start) nohup /bin/sh {program} >/dev/null 2>&1 & ;;\n'
        f"  stop) pkill -f {program} ;;\nesac\nexit 0\n"
    )
    return _write(f"/etc/init.d/{name}", text)


def plant_steps() -> dict[str, list[str]]:
    """Shell steps per field host (run in order with sh -ec)."""
    lt, mesh, ninja = fact("lt_dir"), fact("trmm_mesh"), fact("ninja_dir")
    pd = fact("ninja_programdata")
    sc_msp, sc_client = sc_dir(MSP_SC), sc_dir(CLIENT_SC)
    srv01 = [
        # Automate: the reference's folder and unit, a SysV script next to it, and a broken uninstaller.
        _write(f"{lt}/ltechagent", AGENT),
        _write(f"{lt}/{fact('lt_uninstaller')}", BROKEN_UNINSTALLER),
        _unit(fact("lt_unit"), f"/bin/sh {lt}/ltechagent", "LabTech agent"),
        _initd("ltechagent", f"{lt}/ltechagent"),
        "update-rc.d ltechagent defaults >/dev/null 2>&1 || true",
        # Tactical's mesh agent whose -uninstall hangs.
        _write(f"{mesh}/meshagent", HUNG_AGENT),
        _unit(fact("trmm_unit"), f"/bin/sh {mesh}/meshagent", "Mesh Agent"),
        # Datto RMM's agent process started from /etc/rc.local by a technician (no unit at all).
        _write(f"{fact('datto_service')}/CagService", AGENT),
        _write(f"{fact('datto_agent')}/AEMAgent", AGENT),
        _write("/etc/rc.local", f"#!/bin/sh -e\n/bin/sh {fact('datto_agent')}/AEMAgent &\nexit 0\n"),
        "systemctl daemon-reload",
        "systemctl enable --now ltechagent.service meshagent.service >/dev/null 2>&1",
        "systemctl start rc-local.service",
    ]
    ws01 = [
        # NinjaOne: the reference's deb name (dpkg lowercases it) owning the reference's folder, the agent a
        # real binary copied there, run by a unit under a name the catalog does not know.
        f"mkdir -p /tmp/ninja/DEBIAN /tmp/ninja{pd}",
        f"cp /bin/sleep /tmp/ninja{pd}/NinjaRMMAgent",
        _write(
            "/tmp/ninja/DEBIAN/control",
            f"Package: {fact('ninja_package')}\nVersion: 5.9.1\nArchitecture: all\n"
            "Maintainer: NinjaOne <x@invalid>\nDescription: stand-in for the NinjaOne agent package\n",
            "0644",
        ),
        "dpkg-deb --build /tmp/ninja /tmp/ninja.deb >/dev/null",
        "dpkg -i /tmp/ninja.deb >/dev/null && rm -rf /tmp/ninja /tmp/ninja.deb",
        _unit("/etc/systemd/system/ninjaone-agent.service", f"{pd}/NinjaRMMAgent infinity", "NinjaOne agent"),
        # Datto RMM: a package under a name the catalog does not list, owning the reference's folder.
        f"mkdir -p /tmp/datto/DEBIAN /tmp/datto{fact('datto_service')}",
        f"cp /bin/true /tmp/datto{fact('datto_service')}/CagService",
        _write(
            "/tmp/datto/DEBIAN/control",
            "Package: datto-rmm-agent\nVersion: 4.4.2\nArchitecture: all\n"
            "Maintainer: Datto <x@invalid>\nDescription: stand-in for a repackaged Datto RMM agent\n",
            "0644",
        ),
        "dpkg-deb --build /tmp/datto /tmp/datto.deb >/dev/null",
        "dpkg -i /tmp/datto.deb >/dev/null && rm -rf /tmp/datto /tmp/datto.deb",
        # ScreenConnect: the MSP's instance and the client's own, each started from its init.d script.
        _write(f"{sc_msp}/ClientService", AGENT),
        _write(f"{sc_client}/ClientService", AGENT),
        _initd(f"screenconnect-{MSP_SC}", f"{sc_msp}/ClientService"),
        _initd(f"screenconnect-{CLIENT_SC}", f"{sc_client}/ClientService"),
        f"update-rc.d screenconnect-{MSP_SC} defaults >/dev/null 2>&1 || true",
        f"update-rc.d screenconnect-{CLIENT_SC} defaults >/dev/null 2>&1 || true",
        "systemctl daemon-reload",
        "systemctl enable --now ninjaone-agent.service >/dev/null 2>&1",
        f"systemctl start screenconnect-{MSP_SC}.service screenconnect-{CLIENT_SC}.service",
    ]
    srv02 = [
        # NinjaOne again, with a folder that cannot be deleted (a mount inside it): the run must fail here.
        _write(f"{pd}/ninjarmm-cli", AGENT),
        f"mkdir -p {pd}/logs && mount -t tmpfs tmpfs {pd}/logs",
        _unit("/etc/systemd/system/ninjaone-agent.service", f"/bin/sh {pd}/ninjarmm-cli", "NinjaOne agent"),
        "systemctl daemon-reload",
        "systemctl enable --now ninjaone-agent.service >/dev/null 2>&1",
    ]
    assert ninja in pd
    return {"field-srv01": srv01, "field-ws01": ws01, "field-srv02": srv02}


# What must be gone after a real run (MSP) and what must stay (client), per host.
MSP_LEFT = {
    "field-srv01": {
        "paths": [
            fact("lt_dir"),
            fact("lt_unit"),
            "/etc/init.d/ltechagent",
            fact("trmm_mesh"),
            fact("trmm_unit"),
            fact("datto_service"),
            "/usr/local/share/CentraStage",
        ],
        "units": ["ltechagent.service", "meshagent.service"],
        "packages": [],
        "process_patterns": ["ltechagent", "tacticalmesh", "CentraStage"],
        "lines": {"/etc/rc.local": "CentraStage"},
        "rcd": ["ltechagent"],
    },
    "field-ws01": {
        "paths": [
            fact("ninja_dir"),
            "/etc/systemd/system/ninjaone-agent.service",
            sc_dir(MSP_SC),
            f"/etc/init.d/screenconnect-{MSP_SC}",
            fact("datto_service"),
        ],
        "units": ["ninjaone-agent.service", f"screenconnect-{MSP_SC}.service"],
        "packages": [fact("ninja_package").lower(), "datto-rmm-agent"],
        "process_patterns": ["NinjaRMMAgent", MSP_SC],
        "lines": {},
        "rcd": [f"screenconnect-{MSP_SC}"],
    },
}
CLIENT_KEPT = {
    "field-ws01": {
        "paths": [sc_dir(CLIENT_SC), f"/etc/init.d/screenconnect-{CLIENT_SC}"],
        "process_patterns": [CLIENT_SC],
        "rcd": [f"screenconnect-{CLIENT_SC}"],
    }
}

_SNAPSHOT = r"""
import json, os, subprocess, sys
probe = json.loads(sys.argv[1])
def run(*a):
    return subprocess.run(a, capture_output=True, text=True).stdout.strip()
out = {"paths": {p: os.path.lexists(p) for p in probe["paths"]}}
out["units"] = {u: run("systemctl", "show", "-p", "LoadState", "--value", u) for u in probe["units"]}
out["packages"] = {p: run("dpkg-query", "-W", "-f=${Status}", p) for p in probe["packages"]}
out["processes"] = sorted(
    a for a in run("ps", "-eo", "args=").splitlines() if not a.startswith(("ps ", "python3", "sleep"))
)
out["files"] = {f: (open(f).read() if os.path.exists(f) else None) for f in probe["files"]}
out["rcd"] = sorted(x for d in ("/etc/rc2.d", "/etc/rc3.d") if os.path.isdir(d) for x in os.listdir(d))
print(json.dumps(out))
"""


def exec_(container: str, *cmd: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, *cmd], text=True, capture_output=True, timeout=timeout
    )


def snapshot(container: str) -> dict:
    msp = MSP_LEFT.get(container, {})
    client = CLIENT_KEPT.get(container, {})
    probe = {
        "paths": msp.get("paths", []) + client.get("paths", []) + [fact("ninja_dir")],
        "units": msp.get("units", []),
        "packages": msp.get("packages", []),
        "files": ["/etc/rc.local"],
    }
    proc = exec_(container, "python3", "-c", _SNAPSHOT, json.dumps(probe))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def up(hosts: list[str]) -> None:
    """Fresh field containers from the lab image, planted."""
    lab_mod.ensure_docker()
    tag = lab_mod.ensure_image(log=lambda _m: None)
    steps = plant_steps()
    for name in hosts:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--label",
                f"{FIELD_LABEL}=1",
                "--network",
                "none",
                *lab_mod.RUN_ARGS,
                "--hostname",
                name,
                tag,
            ],
            check=True,
            capture_output=True,
        )
    for name in hosts:
        _wait_booted(name)
        script = " && ".join(steps[name])
        proc = exec_(name, "sh", "-ec", script, timeout=300)
        assert proc.returncode == 0, f"{name}: planting failed: {proc.stderr[-2000:]}"


def _wait_booted(name: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = exec_(name, "systemctl", "is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{name}: systemd did not finish booting")


def down(hosts: list[str]) -> None:
    for name in hosts:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def evidence_env(store: Path) -> dict[str, str]:
    """A plain run's evidence in its own store (the preflight names the client: `field`)."""
    store.mkdir(parents=True, exist_ok=True)
    return {"OFFBOARD_EVIDENCE_DIR": str(store)}


def the_run(store: Path) -> Path:
    """The one sealed run folder of client `field` in store."""
    runs = [p for p in (store / "field").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs
    assert (runs[0] / "MANIFEST.sha256").is_file(), f"{runs[0]} was not sealed"
    return runs[0]


def write_inventory(folder: Path, hosts: list[str]) -> Path:
    """A throw-away client inventory `field` for the field hosts (not under inventories/)."""
    client = folder / "field"
    (client / "group_vars").mkdir(parents=True, exist_ok=True)
    (client / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "field": {
                    "vars": {
                        "ansible_connection": "community.docker.docker_api",
                        "ansible_python_interpreter": "/usr/bin/python3",
                    },
                    "hosts": {h: {"ansible_host": h} for h in hosts},
                }
            }
        )
    )
    # The lab's client facts (every role validates its inputs in every phase play), with this client's
    # name and MSP products; no security or backup products on these machines.
    facts = yaml.safe_load((lab_mod.project_root() / "inventories/lab/group_vars/lab.yml").read_text())
    facts.update(
        offboard_client_id="field",
        offboard_client_name="Field Variants Ltd (test)",
        offboard_msp_products=[
            {"product": "screenconnect", "instances": [MSP_SC]},
            {"product": "connectwise_automate"},
            {"product": "tactical_rmm"},
            {"product": "datto_rmm"},
            {"product": "ninjaone"},
        ],
    )
    facts.pop("offboard_security", None)
    facts.pop("offboard_backup_terms", None)
    (client / "group_vars" / "field.yml").write_text(yaml.safe_dump(facts))
    return client
