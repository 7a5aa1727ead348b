"""`pools apply -f`: what a pool document changes, compared as the server keeps it.

A document is the desired state of one pool (name, description, pool_type, k8s_config). The
server keeps a config as it was written (no defaults filled in) and gives each freeze window an
id; a window in a document, with or without an id, is the same window when its content is
(from/to, weekdays, time zone, policy, note). So what ``export`` wrote and a hand-written file
apply alike: a second run changes nothing and the pool's revision stays where it is.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from slotpool.cli.common import UserError
from slotpool.client import ApiError, Client
from slotpool.domain.config import PoolConfig, canonical_json, stored_form

POOL_DOC_KEYS = ("name", "description", "pool_type", "k8s_config")
WINDOWS = "freeze_schedules"


def export_document(pool: dict[str, Any]) -> dict[str, Any]:
    return {key: pool[key] for key in POOL_DOC_KEYS if pool.get(key) is not None}


def check_documents(documents: list[Any], source: str) -> list[dict[str, Any]]:
    """Every document a mapping with a name and only the keys of a pool, before any is applied."""
    if not documents:
        raise UserError(f"{source}: no YAML document in it")
    for number, doc in enumerate(documents, start=1):
        where = f"{source}, document {number}"
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            raise UserError(f"{where}: a pool is a mapping with at least a name (a string)")
        unknown = sorted(set(doc) - set(POOL_DOC_KEYS), key=str)
        if unknown:
            raise UserError(
                f"{where}: unknown key {', '.join(map(str, unknown))}; "
                f"valid keys: {', '.join(POOL_DOC_KEYS)}"
            )
    return documents


def kept_form(wanted: Any, current: dict[str, Any] | None) -> Any:
    """``wanted`` as the server would keep it once saved: as written, without nulls, and each
    window with the id of the pool's window it equals (the server's rule)."""
    if not isinstance(wanted, dict):
        return wanted
    try:
        parsed = PoolConfig.model_validate(wanted)
    except ValidationError:
        return wanted
    kept: dict[str, Any] = stored_form(parsed)
    existing = list((current or {}).get(WINDOWS) or [])
    if parsed.freeze_schedules is None:
        if existing:
            kept[WINDOWS] = existing  # a save without windows leaves them alone
        return kept
    free = {_window_key(w): w for w in reversed(existing)}
    windows = []
    for window in parsed.freeze_schedules:
        view = window.model_dump(mode="json", exclude_none=True)
        same = free.pop(_window_key(view), None) if "id" not in view else None
        windows.append({"id": same["id"], **view} if same else view)
    if windows:
        kept[WINDOWS] = windows
    return kept


def _window_key(window: dict[str, Any]) -> str:
    return canonical_json({k: v for k, v in window.items() if k != "id"})


def _comparable(config: Any, *, with_windows: bool) -> Any:
    """A config as the server keeps it, windows without ids and in no particular order."""
    if not isinstance(config, dict):
        return config
    try:
        parsed = PoolConfig.model_validate(config)
    except ValidationError:
        return config  # not a config: the server says what is wrong when it is sent
    view: dict[str, Any] = stored_form(parsed)
    if with_windows:
        windows = parsed.freeze_schedules or []
        view[WINDOWS] = sorted(
            canonical_json(w.model_dump(mode="json", exclude={"id"})) for w in windows
        )
    return view


def config_changes(current: dict[str, Any] | None, wanted: Any) -> bool:
    """Whether saving ``wanted`` changes the pool's config. Windows count only when the document
    has them: without ``freeze_schedules`` a save leaves the pool's windows alone."""
    with_windows = isinstance(wanted, dict) and WINDOWS in wanted
    before = _comparable(current or {}, with_windows=with_windows)
    return bool(before != _comparable(wanted, with_windows=with_windows))


@dataclass
class Plan:
    """What applying one document does to one pool: ``pool`` is None when it is created."""

    doc: dict[str, Any]
    pool: dict[str, Any] | None
    changes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        pool = self.pool
        return f"agent pool {self.doc['name']}" + (f" ({pool['pool_id']})" if pool else "")

    def after(self) -> dict[str, Any]:
        """The pool's document once applied."""
        if self.pool is None:
            return dict(self.doc)
        result = export_document(self.pool)
        if "description" in self.changes:
            result["description"] = self.doc["description"]
        if "k8s_config" in self.changes:
            result["k8s_config"] = kept_form(self.doc["k8s_config"], self.pool.get("k8s_config"))
        return result

    def diff(self) -> str:
        before = "" if self.pool is None else _yaml(export_document(self.pool))
        lines = difflib.unified_diff(
            before.splitlines(keepends=True),
            _yaml(self.after()).splitlines(keepends=True),
            fromfile=f"{self.doc['name']} (server)" if self.pool else "/dev/null",
            tofile=f"{self.doc['name']} (file)",
        )
        return "".join(lines)


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def plan(api: Client, doc: dict[str, Any]) -> Plan:
    existing = api.list_pools(name=doc["name"])
    if not existing:
        return Plan(doc, None)
    pool = existing[0]
    if doc.get("pool_type", pool["pool_type"]) != pool["pool_type"]:
        raise ApiError(
            409,
            {"error": f"{pool['name']} is a {pool['pool_type']} pool; the type cannot change"},
        )
    changes = []
    if "description" in doc and doc["description"] != pool["description"]:
        changes.append("description")
    if "k8s_config" in doc and config_changes(pool["k8s_config"], doc["k8s_config"]):
        changes.append("k8s_config")
    return Plan(doc, pool, changes)


def carry_out(api: Client, planned: Plan) -> str:
    """Make the planned changes; returns what happened, in one line."""
    if planned.pool is None:
        created = api.json("POST", "/api/v1/agent-pools", json=planned.doc)
        return f"agent pool {created['name']} ({created['pool_id']}) created"
    path = f"/api/v1/agent-pools/{planned.pool['pool_id']}"
    if "description" in planned.changes:
        api.json("PATCH", path, json={"description": planned.doc["description"]})
    if "k8s_config" in planned.changes:
        api.json("PUT", f"{path}/k8s-config", json=planned.doc["k8s_config"])
    return f"{planned.label} {describe(planned.changes, 'updated')}"


def describe(changes: list[str], done: str) -> str:
    return f"{', '.join(changes)} {done}" if changes else "unchanged"
