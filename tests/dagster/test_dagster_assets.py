"""dagster-polytomic (PyPI) pointed at Syncline builds one Dagster asset per enabled schema of a
bulk sync.

Data teams orchestrate bulk syncs from Dagster with ``PolytomicComponent``: its
``PolytomicWorkspace`` lists connections, bulk syncs and each sync's schemas with the Polytomic
SDK (``connections.list``, ``bulk_sync.list``, ``bulk_sync.schemas.list``, and
``identity.get`` for the state key), and the component turns every enabled schema into an
``AssetSpec`` keyed ``[destination schema, schema id]``.

dagster-polytomic 0.29.27 builds its clients as ``Polytomic(version=..., token=...)``: there is
no setting for the base URL, so ``SynclineWorkspace`` below is the workspace with its two
client properties built the same way plus ``base_url``. It reads ``fields`` from the schema list
items, typed only by the 1.x SDK (``BulkSchema``), hence polytomic 1.18.0 in this suite's venv.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet
from dagster_polytomic import PolytomicComponent
from dagster_polytomic.objects import PolytomicWorkspaceData
from dagster_polytomic.translation import PolytomicSchemaMetadataSet
from dagster_polytomic.workspace import POLYTOMIC_CLIENT_VERSION, PolytomicWorkspace
from polytomic import AsyncPolytomic, Polytomic

import support

DATASET = "warehouse"


class SynclineWorkspace(PolytomicWorkspace):
    """dagster-polytomic's workspace, its SDK clients pointed at `base_url`."""

    base_url: str

    @cached_property
    def async_client(self) -> AsyncPolytomic:
        return AsyncPolytomic(base_url=self.base_url, version=POLYTOMIC_CLIENT_VERSION, token=self.token)

    @cached_property
    def client(self) -> Polytomic:
        return Polytomic(base_url=self.base_url, version=POLYTOMIC_CLIENT_VERSION, token=self.token)


def api(server, token: str, method: str, path: str, body: dict | None = None) -> dict:
    resp = requests.request(method, f"{server.base_url}{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    assert resp.ok, f"{method} {path}: HTTP {resp.status_code} {resp.text}"
    return resp.json()["data"]


@pytest.fixture(scope="module")
def org(server) -> tuple[str, str, str]:
    """A fresh organization: its id, name and an API key of its admin (SDK 1.x, partner key)."""
    partner = Polytomic(base_url=server.base_url, token=server.deployment_key)
    name = f"dagster-{support.random_suffix()}"
    organization = partner.organization.create(name=name).data
    user = partner.users.create(organization.id, email=f"admin-{support.random_suffix()}@example.com").data
    key = partner.users.create_api_key(organization.id, user.id).data
    return organization.id, name, key.value


@pytest.mark.filterwarnings("ignore:Class `PolytomicComponent` is currently in preview")
def test_bulk_sync_schemas_become_assets(server, org, tmp_path: Path):
    org_id, org_name, token = org
    with server.connect(server.source_db) as conn:
        conn.execute("create table users (id int primary key, email text, updated_at timestamptz default now());"
                     "create table orders (id int primary key, total numeric(10, 2));"
                     "create table notes (id int primary key, body text)")
    src = api(server, token, "POST", "/api/connections", {
        "name": "warehouse source", "type": "postgresql",
        "configuration": server.postgres_configuration(server.source_db, "src-pw")})
    dst = api(server, token, "POST", "/api/connections", {
        "name": "warehouse", "type": "postgresql",
        "configuration": server.postgres_configuration(server.destination_db, "dst-pw")})
    sync = api(server, token, "POST", "/api/bulk/syncs", {
        "name": "pg -> pg for dagster", "source_connection_id": src["id"], "destination_connection_id": dst["id"],
        "destination_configuration": {"schema": DATASET}, "mode": "replicate", "active": True,
        "default_schedule": {"frequency": "manual"},
        "schemas": [
            {"id": "public.users", "tracking_field": "updated_at", "user_output_name": "people",
             "fields": ["id", "email", "updated_at"]},
            "public.orders",
            # Disabled: dagster-polytomic makes assets of enabled schemas only.
            {"id": "public.notes", "enabled": False},
        ],
    })
    listed = api(server, token, "GET", f"/api/bulk/syncs/{sync['id']}/schemas")
    assert {(s["id"], s["enabled"]) for s in listed} == \
        {("public.users", True), ("public.orders", True), ("public.notes", False)}

    workspace = SynclineWorkspace(token=token, base_url=server.base_url)
    component = PolytomicComponent(workspace=workspace)
    assert component.defs_state_config.key == f"PolytomicComponent[{org_name}]", "identity.get"

    # What the component does to build its definitions: fetch the state, store it, load it back.
    state_path = tmp_path / "polytomic-state"
    asyncio.run(component.write_state_to_path(state_path))
    state = component.load_state_from_path(state_path)
    assert isinstance(state, PolytomicWorkspaceData)
    # `type` is the connection type's name (`type.name`), as Polytomic gives it.
    assert [(c.id, c.name, c.type, c.organization_id) for c in sorted(state.connections, key=lambda c: c.name)] == [
        (dst["id"], "warehouse", "PostgreSQL", org_id), (src["id"], "warehouse source", "PostgreSQL", org_id)]
    [bulk_sync] = state.bulk_syncs
    assert (bulk_sync.id, bulk_sync.name, bulk_sync.active, bulk_sync.mode) == \
        (sync["id"], "pg -> pg for dagster", True, "replicate")
    assert (bulk_sync.source_connection_id, bulk_sync.destination_connection_id) == (src["id"], dst["id"])
    assert (bulk_sync.organization_id, bulk_sync.destination_configuration_schema) == (org_id, DATASET)

    sdk = Polytomic(base_url=server.base_url, token=token)
    specs = component.build_defs_from_workspace_data(state).resolve_all_asset_specs()
    by_key = {spec.key: spec for spec in specs}
    assert set(by_key) == {dg.AssetKey([DATASET, "public.users"]), dg.AssetKey([DATASET, "public.orders"])}
    expected = {
        "public.users": {"output_name": "people", "tracking_field": "updated_at"},
        "public.orders": {"output_name": "orders", "tracking_field": None},
    }
    for schema_id, settings in expected.items():
        spec = by_key[dg.AssetKey([DATASET, schema_id])]
        assert spec.group_name == DATASET
        assert spec.kinds == {"polytomic"}
        assert TableMetadataSet.extract(spec.metadata).table_name == f"{DATASET}.{schema_id}"
        shown = PolytomicSchemaMetadataSet.extract(spec.metadata)
        assert shown == PolytomicSchemaMetadataSet(
            id=schema_id, bulk_sync_id=sync["id"], partition_key=None,
            source_connection_id=src["id"], source_connection_name="warehouse source",
            destination_connection_id=dst["id"], destination_connection_name="warehouse", **settings)
        # The schema as the workspace read it from `bulk_sync.schemas.list`, with the fields the
        # 1.x SDK types there (Syncline lists them as `bulk_sync.schemas.get` gives them).
        [schema] = [s for s in state.get_bulk_sync_schemas(sync["id"]) if s.id == schema_id]
        assert (schema.enabled, schema.output_name, schema.tracking_field) == \
            (True, settings["output_name"], settings["tracking_field"])
        one = sdk.bulk_sync.schemas.get(sync["id"], schema_id).data
        assert [(f.id, f.enabled) for f in schema.fields] == \
            [(f.id, f.enabled) for f in one.fields]
    users = sdk.bulk_sync.schemas.get(sync["id"], "public.users").data
    assert [(f.id, f.enabled) for f in users.fields if f.enabled] == \
        [("id", True), ("email", True), ("updated_at", True)]
