"""The on-disk layout of a data folder: the one place that says where each file lives.

Used by the host (standalone and shards: manifests, logs, workspaces), the shard's owner lock
(`kube.fence`), folder disposal on deletion (`kube.folders`, run by a shard or the operator),
the token stores and the CLI:

    <data>/agents/<namespace>/<name>/manifest.yaml   the agent's manifest (written on apply)
                                     events.db       its event log (+ -wal, -shm)
                                     workspace/      the folder its tools work in
                                     owner.lock      flock of the shard that has it open (Kubernetes)
    <data>/archive/<namespace>/<name>-<UTC stamp>/   a deleted agent's folder (spec.onDelete: archive)
    <data>/tokens.json                               token digests
    <data>/admin.token                               the admin token (mode 0600)

Path arithmetic only: nothing here reads or writes the disk, except `find_manifests` (one glob).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

AGENTS_DIR = "agents"
ARCHIVE_DIR = "archive"
MANIFEST_FILE = "manifest.yaml"
EVENT_LOG_FILE = "events.db"
WORKSPACE_DIR = "workspace"
OWNER_LOCK_FILE = "owner.lock"
TOKENS_FILE = "tokens.json"
ADMIN_TOKEN_FILE = "admin.token"


def agents_root(data: Path) -> Path:
    return data / AGENTS_DIR


def agent_folder(data: Path, namespace: str, name: str) -> Path:
    """The folder of agent `namespace/name` (everything the agent owns lives in it)."""
    return agents_root(data) / namespace / name


def manifest_file(folder: Path) -> Path:
    return folder / MANIFEST_FILE


def event_log(folder: Path) -> Path:
    return folder / EVENT_LOG_FILE


def workspace(folder: Path) -> Path:
    return folder / WORKSPACE_DIR


def owner_lock(folder: Path) -> Path:
    return folder / OWNER_LOCK_FILE


def find_manifests(data: Path) -> list[Path]:
    """The manifest file of every agent folder under `data`, sorted (blocking: one glob)."""
    return sorted(agents_root(data).glob(f"*/*/{MANIFEST_FILE}"))


def archive_folder(data: Path, namespace: str, name: str, now: datetime) -> Path:
    """Where a deleted agent's folder is archived: its name with the UTC time of the deletion."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return data / ARCHIVE_DIR / namespace / f"{name}-{stamp}"


def tokens_file(data: Path) -> Path:
    return data / TOKENS_FILE


def admin_token_file(data: Path) -> Path:
    return data / ADMIN_TOKEN_FILE
