# Copyright: the offboard project contributors
# Apache-2.0
"""Filter for the lab's plant playbook: flatten one host's footprints into per-task lists.

One task per kind of thing (directories, programs, units, packages, ...) for all footprints of a host,
instead of one include per footprint, keeps planting the whole lab to a few seconds per task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

DEB_ROOT = "/var/tmp/offboard-lab/debs"
PACKAGED_UNIT_DIR = "/lib/systemd/system"


def lab_plan(plant: Sequence[str], footprints: Mapping[str, Any]) -> dict[str, list[Any]]:
    plan: dict[str, list[Any]] = {
        "dirs": [],
        "programs": [],
        "texts": [],
        "units": [],
        "debs": [],
        "controls": [],
        "services": [],
        "runtime_files": [],
        "cron": [],
        "lines": [],
    }
    for fp_id in plant:
        if fp_id not in footprints:
            raise ValueError(f"lab_plant names {fp_id!r}, which playbooks/lab/footprints.yml does not define")
        fp = footprints[fp_id]
        deb = fp.get("deb")
        root = f"{DEB_ROOT}/{deb['package']}" if deb else ""
        for spec in fp.get("files", []):
            dest = root + spec["path"]
            plan["dirs"].append(os.path.dirname(dest))
            entry = {"fp": fp_id, "dest": dest, "file": spec}
            plan["programs" if spec["kind"] in ("agent", "uninstaller") else "texts"].append(entry)
        for unit in fp.get("units", []):
            unit_dir = root + PACKAGED_UNIT_DIR if deb else unit["dir"]
            plan["dirs"].append(unit_dir)
            plan["units"].append({"fp": fp_id, "dest": f"{unit_dir}/{unit['name']}", "unit": unit})
            if not deb:
                plan["services"].append(unit["name"])
        names = " ".join(u["name"] for u in fp.get("units", []))
        if deb:
            plan["dirs"].append(f"{root}/DEBIAN")
            plan["debs"].append({"fp": fp_id, "tree": root, "deb": f"{root}.deb", **deb})
            control = (
                f"Package: {deb['package']}\nVersion: {deb['version']}\nArchitecture: all\n"
                "Maintainer: offboard lab <lab@offboard.test>\n"
                f"Description: offboard lab stand-in for {fp_id}\n"
                " Planted by the offboard project's lab; contains no vendor code.\n"
            )
            postinst = f"#!/bin/sh\nset -e\nsystemctl daemon-reload\nsystemctl enable --now {names}\n"
            prerm = f"#!/bin/sh\nsystemctl disable --now {names} || true\n"
            for name, mode, content in (
                ("control", "0644", control),
                ("postinst", "0755", postinst),
                ("prerm", "0755", prerm),
            ):
                plan["controls"].append({"dest": f"{root}/DEBIAN/{name}", "mode": mode, "content": content})
        for runtime in fp.get("runtime_files", []):
            plan["dirs"].append(os.path.dirname(runtime["path"]))
            plan["runtime_files"].append(runtime)
        plan["cron"].extend(fp.get("cron", []))
        # Lines appended to a file the system already has (e.g. /etc/crontab), and units planted as plain
        # files (timers, oneshot services) that are enabled like a vendor's install script would.
        plan["lines"].extend(fp.get("lines", []))
        plan["services"].extend(fp.get("enable", []))
    plan["dirs"] = sorted(set(plan["dirs"]))
    return plan


class FilterModule:
    def filters(self):
        return {"lab_plan": lab_plan}
