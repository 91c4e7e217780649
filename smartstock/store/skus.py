"""Per-SKU policy overrides kept in the store (table `skus`), edited with `smartstock sku set`.

Effective policy of a SKU = config `[inventory.defaults]`, then `[inventory.skus.<SKU>]`, then the
store's overrides (the latest word: what a technician set on the device). A NULL column means "not
overridden here".
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pydantic import ValidationError

from smartstock.config import InventoryConfig, SkuPolicy
from smartstock.errors import InvalidParameter, first_problem
from smartstock.sku import sku_problem
from smartstock.store.db import utcnow

POLICY_FIELDS: tuple[str, ...] = tuple(SkuPolicy.model_fields)


def get_overrides(conn: sqlite3.Connection, sku: str) -> dict[str, Any]:
    """The store's overrides for a SKU (only the fields that are set)."""
    row = conn.execute(f"SELECT {', '.join(POLICY_FIELDS)} FROM skus WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        return {}
    return {f: v for f, v in zip(POLICY_FIELDS, tuple(row)) if v is not None}


def get_name(conn: sqlite3.Connection, sku: str) -> str | None:
    row = conn.execute("SELECT name FROM skus WHERE sku = ?", (sku,)).fetchone()
    return row[0] if row else None


def effective_policy(inventory: InventoryConfig, conn: sqlite3.Connection, sku: str) -> SkuPolicy:
    """Config defaults, then the config's per-SKU section, then the store's overrides."""
    merged = {**inventory.policy_for(sku).model_dump(), **get_overrides(conn, sku)}
    return _validated(sku, merged)


def set_overrides(conn: sqlite3.Connection, inventory: InventoryConfig, sku: str, values: dict[str, Any], *,
                  name: str | None = None) -> SkuPolicy:
    """Store overrides (inside the caller's transaction) after checking the merged policy is valid.

    Returns the new effective policy. Unknown fields and out-of-range values raise InvalidParameter and
    change nothing.
    """
    unknown = sorted(set(values) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidParameter(f"unknown policy field(s) {', '.join(unknown)}; known: {', '.join(POLICY_FIELDS)}")
    problem = sku_problem(sku)
    if problem:
        raise InvalidParameter(problem)
    overrides = {**get_overrides(conn, sku), **values}
    policy = _validated(sku, {**inventory.policy_for(sku).model_dump(), **overrides})
    cols = ", ".join(POLICY_FIELDS)
    marks = ", ".join("?" * len(POLICY_FIELDS))
    updates = ", ".join(f"{f} = excluded.{f}" for f in POLICY_FIELDS)
    name_sql = "COALESCE(excluded.name, skus.name)"
    conn.execute(f"INSERT INTO skus(sku, name, {cols}, updated_at) VALUES (?, ?, {marks}, ?) "
                 f"ON CONFLICT(sku) DO UPDATE SET name = {name_sql}, {updates}, updated_at = excluded.updated_at",
                 (sku, name, *(overrides.get(f) for f in POLICY_FIELDS), utcnow()))
    return policy


def clear_overrides(conn: sqlite3.Connection, sku: str, fields: list[str] | None = None) -> None:
    """Forget the store's overrides (all, or the named fields) so the config applies again."""
    names = list(POLICY_FIELDS) if fields is None else fields
    unknown = sorted(set(names) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidParameter(f"unknown policy field(s) {', '.join(unknown)}; known: {', '.join(POLICY_FIELDS)}")
    conn.execute(f"UPDATE skus SET {', '.join(f'{f} = NULL' for f in names)}, updated_at = ? WHERE sku = ?",
                 (utcnow(), sku))


def known_skus(conn: sqlite3.Connection, inventory: InventoryConfig | None = None) -> list[str]:
    """Every SKU the device knows of: configured, overridden, with stock movements or with sales."""
    found = {r[0] for r in conn.execute("SELECT sku FROM skus UNION SELECT sku FROM stock_totals "
                                        "UNION SELECT DISTINCT sku FROM sales")}
    if inventory is not None:
        found |= set(inventory.skus)
    return sorted(found)


def _validated(sku: str, data: dict[str, Any]) -> SkuPolicy:
    try:
        return SkuPolicy(**data)
    except ValidationError as e:
        fld, first = first_problem(e)
        desc = SkuPolicy.model_fields[fld].description if fld in SkuPolicy.model_fields else ""
        raise InvalidParameter(f"SKU {sku}: {fld} = {first.get('input')!r}: {first['msg']}",
                               hint=f"{fld}: {desc}" if desc else None) from None
