# Copyright: the offboard project contributors
# Apache-2.0
"""Filters: a role's share of the client's MSP products; those products and the catalog as footprint items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.offboard.msp.plugins.module_utils import offboard_products

_FACT_LISTS = ("packages", "services", "processes", "paths")
_NAME_KEYS = ("name", "path", "label", "key", "pattern", "display_name")


def _fact_value(fact: Any) -> Any:
    """A catalog fact is {name|path|...: value, source, confidence}; keep the value (dicts stay dicts)."""
    if isinstance(fact, Mapping):
        values = [fact[k] for k in _NAME_KEYS if k in fact]
        # {key, value} names a registry value (not the whole key): keep both.
        if len(values) == 1 and not ("label" in fact and "plist" in fact) and "value" not in fact:
            return values[0]
        return {k: v for k, v in fact.items() if k not in ("source", "confidence")}
    return fact


def _substitute(value: Any, instance: str | None) -> Any:
    if isinstance(value, str):
        return value.replace("{instance}", instance) if instance is not None else value
    if isinstance(value, Mapping):
        return {k: _substitute(v, instance) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, instance) for v in value]
    return value


def products_in(entries: Any, catalog_dir: str, legacy: Any = None) -> list[Any]:
    """The client's MSP products (offboard_msp_products) in this role's catalog, then the role's old input.

    Used by each agent role's defaults, e.g. rmm_agent_removal_products (roles/*/defaults/main.yml).
    """
    if entries is not None and not isinstance(entries, list):
        raise AnsibleFilterError("offboard_msp_products must be a list of {product: <id>, instances: [...]}")
    return offboard_products.products_in(entries, str(catalog_dir), legacy)


def agent_scope(
    products: Sequence[Mapping[str, Any]] | None,
    catalog: Mapping[str, Any],
    os_key: str,
    category_order: Sequence[str] = ("remote_access", "rmm"),
) -> list[dict[str, Any]]:
    """One item per (product, instance) the MSP owns, for one OS, remote access first and RMM last.

    Products without a section for this OS (or marked unsupported there) give an item with
    `supported: false`, so that the host still gets an evidence record saying so.
    """
    items: list[dict[str, Any]] = []
    for entry in products or []:
        entry = offboard_products.entry(entry)  # a bare id (an old list of names) -> {product: id}
        product = entry.get("product") if isinstance(entry, Mapping) else None
        if product not in catalog:
            raise AnsibleFilterError(f"unknown product {product!r}: not in the agent catalog")
        spec = catalog[product]
        section = spec.get(os_key) or {}
        supported = bool(section) and "unsupported" not in section
        instances = list(entry.get("instances") or []) if spec.get("instanced") else [None]
        if spec.get("instanced") and not instances:
            raise AnsibleFilterError(
                f"{product} is per-instance: list the MSP's instance ids under 'instances'"
            )
        for instance in instances:
            item: dict[str, Any] = {
                "key": product if instance is None else f"{product}:{instance}",
                "product": product,
                "instance": instance,
                "name": spec.get("name", product),
                "category": spec.get("category", "rmm"),
                "supported": supported,
                "unsupported_reason": section.get("unsupported") if not supported else None,
            }
            if supported:
                for key in _FACT_LISTS:
                    item[key] = [_fact_value(f) for f in section.get(key) or []]
                item["launchd"] = [
                    {"label": j.get("label"), "plist": j.get("plist")} for j in section.get("launchd") or []
                ]
                item["uninstall"] = [
                    {k: v for k, v in u.items() if k not in ("source", "confidence")}
                    for u in section.get("uninstall") or []
                ]
                leftovers = section.get("leftovers") or {}
                item["leftovers"] = {k: [_fact_value(f) for f in v or []] for k, v in leftovers.items()}
                for key in (
                    "registry",
                    "uninstall_entries",
                    "protection",
                    "install_dir_from",
                    "kernel_modules",
                ):
                    if key in section:
                        item[key] = section[key]
            items.append(_substitute(item, instance))
    order = {c: i for i, c in enumerate(category_order)}
    return sorted(items, key=lambda i: order.get(i["category"], len(order)))


class FilterModule:
    def filters(self):
        return {"offboard_agent_scope": agent_scope, "offboard_products_in": products_in}
