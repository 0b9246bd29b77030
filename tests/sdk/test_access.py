"""Organizations, users, identity, roles and policies, driven through the official Polytomic SDK.

Covers `client.organization`, `client.users`, `client.identity`, `client.permissions.roles` and
`client.permissions.policies` (shared/reference/polytomic-api.md §2, §3.2, §3.3, §3.13) against a
real Syncline server (see conftest.py):

* organizations: partner CRUD, unique names, the write-only `client_secret`, `get_current`;
* users: the partner routes and the current-organization routes, the first user becoming
  Admin, `role` / `role_ids` validation, API keys and `force` revocation, the last admin;
* identity: user key, deployment key (partner) and Basic `org_id:deployment key`;
* roles and policies: system objects, CRUD, validation of policy actions and role ids;
* access in practice: a Member gaining `connection:create` and a per-connection `update`
  through a custom role and policies;
* isolation: another organization's objects do not exist for a user (404).

Every test builds its own organizations (unique names and emails) and removes them at the end.
Error expectations are made with `max_retries=0` so that a 409 or 5xx surfaces at once instead
of being retried by the SDK.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from typing import TYPE_CHECKING, Callable

import pytest
from polytomic import PolicyAction, Polytomic
from polytomic.core.api_error import ApiError
from polytomic.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
    UnprocessableEntityError,
)

from support import random_suffix

if TYPE_CHECKING:
    from conftest import SynclineServer

NO_RETRY = {"max_retries": 0}


# ----------------------------------------------------------------------------- helpers


def expect_status(status: int, call: Callable, *args, what: str, kind: type = ApiError, **kwargs) -> ApiError:
    """Call an SDK method that must fail with HTTP `status`, raised as `kind`.

    `kind` is the SDK's typed error where polytomic 25.9.10 declares that status for the
    method; otherwise the SDK raises its base ApiError and only the status is checked.
    """
    kwargs.setdefault("request_options", NO_RETRY)
    try:
        result = call(*args, **kwargs)
    except ApiError as err:
        if err.status_code != status or not isinstance(err, kind):
            pytest.fail(
                f"{what}: expected HTTP {status} ({kind.__name__}), got {type(err).__name__} "
                f"(HTTP {err.status_code}): {err.body!r}"
            )
        return err
    pytest.fail(
        f"{what}: expected HTTP {status} ({kind.__name__}), but the call succeeded: {result!r}"[:2000]
    )


def basic_auth(org_id: str, key: str) -> dict:
    token = base64.b64encode(f"{org_id}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclasses.dataclass
class Person:
    """A user of an organization with an API key and an SDK client using it."""

    id: str
    email: str
    key: str
    client: Polytomic


@dataclasses.dataclass
class Tenant:
    """An organization with its first user (an Admin) and its system roles."""

    id: str
    name: str
    admin: Person
    admin_role_id: str
    member_role_id: str


class Tenants:
    """Creates organizations and users through the partner key; deletes the orgs afterwards."""

    def __init__(self, server: SynclineServer, partner: Polytomic):
        self.server = server
        self.partner = partner
        self.org_ids: list[str] = []
        self.clients: dict[str, Polytomic] = {}  # org id -> an admin client, for cleanup

    def client(self, key: str) -> Polytomic:
        return Polytomic(base_url=self.server.base_url, token=key)

    def org(self, label: str = "org") -> tuple[str, str]:
        """A new empty organization: (id, name)."""
        name = f"sdk-{label}-{random_suffix()}"
        org = self.partner.organization.create(name=name).data
        assert org is not None and org.id, f"organization.create({name!r}) returned no id"
        self.org_ids.append(org.id)
        return org.id, name

    def person(self, org_id: str, label: str = "user", **roles) -> Person:
        """A new user of `org_id` (created by the partner) with a fresh API key."""
        email = f"{label}-{random_suffix()}@example.com"
        user = self.partner.users.create(org_id, email=email, **roles).data
        assert user is not None and user.id, f"users.create({org_id}, {email!r}) returned no id"
        key = self.partner.users.create_api_key(org_id, user.id).data
        assert key is not None and key.value, f"users.create_api_key for {email} returned no key"
        return Person(id=user.id, email=email, key=key.value, client=self.client(key.value))

    def tenant(self, label: str = "org") -> Tenant:
        org_id, name = self.org(label)
        admin = self.person(org_id, "admin")
        self.clients[org_id] = admin.client
        roles = {r.name: r for r in admin.client.permissions.roles.list().data or [] if r.system}
        missing = {"Admin", "Member"} - set(roles)
        assert not missing, f"permissions.roles.list of a new org lacks system roles {missing}"
        return Tenant(
            id=org_id,
            name=name,
            admin=admin,
            admin_role_id=roles["Admin"].id,
            member_role_id=roles["Member"].id,
        )

    def cleanup(self) -> None:
        for org_id in reversed(self.org_ids):
            pt = self.clients.get(org_id)
            if pt is not None:
                try:
                    for conn in pt.connections.list().data or []:
                        _ignore_errors(pt.connections.delete, conn.id, force=True)
                except Exception:  # noqa: BLE001 - best effort cleanup
                    pass
            _ignore_errors(self.partner.organization.delete, org_id, request_options=NO_RETRY)


def _ignore_errors(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - cleanup, whatever the outcome of the test
        pass


@pytest.fixture
def tenants(server, admin):
    made = Tenants(server, admin)
    yield made
    made.cleanup()


def pg_config(server: SynclineServer) -> dict:
    return server.postgres_configuration(server.source_db, f"access-pw-{random_suffix(16)}")


def actions_of(policy) -> set[tuple[str, frozenset]]:
    return {(a.action, frozenset(a.role_ids or [])) for a in policy.policy_actions or []}


def actions_of_list(actions: list[PolicyAction]) -> set[tuple[str, frozenset]]:
    return {(a.action, frozenset(a.role_ids or [])) for a in actions}


# ------------------------------------------------------------------------ organizations


def test_organization_crud_and_client_secret_is_write_only(server, admin, tenants):
    name = f"sdk-org-{random_suffix()}"
    secret = f"oidc-secret-{random_suffix(24)}"
    raw = admin.organization.with_raw_response.create(
        name=name,
        issuer="https://idp.example.com/",
        sso_domain=f"{random_suffix()}.example.com",
        sso_org_id="org_workos_1",
        client_id="oidc-client-1",
        client_secret=secret,
    )
    assert secret not in raw.response.text and "client_secret" not in raw.response.text, (
        f"organization.create answered the write-only client_secret: {raw.response.text}"
    )
    org = raw.data.data
    assert org is not None and org.id, f"organization.create returned no id: {raw.data!r}"
    tenants.org_ids.append(org.id)
    assert org.name == name and org.issuer == "https://idp.example.com/", f"create echoed {org!r}"
    assert org.sso_org_id == "org_workos_1" and org.sso_domain, f"create echoed {org!r}"

    expect_status(
        409, admin.organization.create, name=name, kind=ConflictError,
        what="organization.create with a name already taken",
    )

    listed = admin.organization.with_raw_response.list()
    assert org.id in {o.id for o in listed.data.data or []}, "organization.list lacks the new org"
    assert secret not in listed.response.text and "client_secret" not in listed.response.text, (
        "organization.list answered a client_secret"
    )
    got = admin.organization.with_raw_response.get(org.id)
    assert got.data.data is not None and got.data.data.name == name, f"organization.get: {got.data!r}"
    assert got.data.data.issuer == "https://idp.example.com/", f"organization.get: {got.data!r}"
    assert secret not in got.response.text and "client_secret" not in got.response.text, (
        f"organization.get answered the client_secret: {got.response.text}"
    )

    new_name, new_secret = f"{name}-renamed", f"oidc-secret-{random_suffix(24)}"
    updated = admin.organization.with_raw_response.update(
        org.id,
        name=new_name,
        issuer="https://login.example.org/",
        sso_domain="corp.example.org",
        sso_org_id="org_workos_2",
        client_id="oidc-client-2",
        client_secret=new_secret,
    )
    assert new_secret not in updated.response.text and "client_secret" not in updated.response.text, (
        f"organization.update answered the client_secret: {updated.response.text}"
    )
    up = updated.data.data
    assert up is not None and up.id == org.id and up.name == new_name, f"organization.update: {up!r}"
    assert (up.issuer, up.sso_domain, up.sso_org_id) == (
        "https://login.example.org/", "corp.example.org", "org_workos_2",
    ), f"organization.update did not store the SSO settings: {up!r}"
    got = admin.organization.get(org.id).data
    assert got is not None and got.name == new_name and got.sso_domain == "corp.example.org", (
        f"organization.get after update: {got!r}"
    )

    # Update replaces the SSO settings wholesale (§3.2): left out means cleared.
    cleared = admin.organization.update(org.id, name=new_name).data
    assert cleared is not None and cleared.issuer is None and cleared.sso_domain is None, (
        f"organization.update with only a name kept SSO settings: {cleared!r}"
    )

    _, other_name = tenants.org("other")
    expect_status(
        409, admin.organization.update, org.id, name=other_name, kind=ConflictError,
        what="organization.update to another organization's name",
    )

    admin.organization.delete(org.id)
    expect_status(
        404, admin.organization.get, org.id, kind=NotFoundError,
        what="organization.get after delete",
    )
    assert org.id not in {o.id for o in admin.organization.list().data or []}, (
        "organization.list still includes a deleted org"
    )
    expect_status(
        404, admin.organization.get, str(uuid.uuid4()), kind=NotFoundError,
        what="organization.get(unknown id)",
    )


def test_current_organization_of_a_user_key(tenants):
    a = tenants.tenant("cur")
    b_id, _ = tenants.org("cur-other")
    pt = a.admin.client

    current = pt.organization.get_current().data
    assert current is not None and current.id == a.id and current.name == a.name, (
        f"organization.get_current with a user key answered {current!r}, expected org {a.id}"
    )
    own = pt.organization.get(a.id).data
    assert own is not None and own.id == a.id, f"organization.get(own org) with a user key: {own!r}"
    expect_status(
        404, pt.organization.get, b_id, kind=NotFoundError,
        what="organization.get(another org) with a user key",
    )
    # Managing organizations needs the partner key (polytomic declares no 403 for create).
    expect_status(
        403, pt.organization.create, name=f"sdk-nope-{random_suffix()}",
        what="organization.create with a user key",
    )
    expect_status(
        403, pt.organization.update, a.id, name=f"sdk-nope-{random_suffix()}", kind=ForbiddenError,
        what="organization.update(own org) with a user key",
    )
    expect_status(
        403, pt.organization.delete, a.id, kind=ForbiddenError,
        what="organization.delete(own org) with a user key",
    )


# -------------------------------------------------------------------------------- users


def test_partner_user_routes_and_default_roles(admin, tenants):
    org_id, _ = tenants.org("users")
    first_email = f"first-{random_suffix()}@example.com"
    first = admin.users.create(org_id, email=first_email).data
    assert first is not None and first.id and first.email == first_email, f"users.create: {first!r}"
    assert first.organization_id == org_id, f"users.create: organization_id {first.organization_id!r}"
    assert first.role == "admin", f"the first user of an org must become admin, got role {first.role!r}"

    key = admin.users.create_api_key(org_id, first.id).data.value
    roles = {r.name: r for r in tenants.client(key).permissions.roles.list().data or []}
    admin_role, member_role = roles["Admin"].id, roles["Member"].id
    assert first.role_ids == [admin_role], (
        f"first user's role_ids are {first.role_ids}, expected [Admin role {admin_role}]"
    )

    second_email = f"second-{random_suffix()}@example.com"
    second = admin.users.create(org_id, email=second_email).data
    assert second is not None and second.role == "member", (
        f"a later user without a role must default to member: {second!r}"
    )
    assert second.role_ids == [member_role], f"second user's role_ids {second.role_ids}"

    third_email = f"third-{random_suffix()}@example.com"
    third = admin.users.create(org_id, email=third_email, role="admin").data
    assert third is not None and third.role == "admin" and third.role_ids == [admin_role], (
        f"users.create(role='admin'): {third!r}"
    )
    fourth_email = f"fourth-{random_suffix()}@example.com"
    fourth = admin.users.create(org_id, email=fourth_email, role_ids=[member_role]).data
    assert fourth is not None and fourth.role == "member" and fourth.role_ids == [member_role], (
        f"users.create(role_ids=[Member]): {fourth!r}"
    )

    listed = {u.id: u for u in admin.users.list(org_id).data or []}
    assert set(listed) == {first.id, second.id, third.id, fourth.id}, (
        f"users.list({org_id}) answered {sorted(listed)}"
    )
    assert listed[second.id].email == second_email and listed[second.id].role == "member", (
        f"users.list entry for the second user: {listed[second.id]!r}"
    )

    got = admin.users.get(org_id, third.id).data
    assert got is not None and got.id == third.id and got.email == third_email, f"users.get: {got!r}"
    assert got.role == "admin", f"users.get: role {got.role!r}"

    demoted = admin.users.update(org_id, third.id, email=third_email, role="member").data
    assert demoted is not None and demoted.role == "member" and demoted.role_ids == [member_role], (
        f"users.update(role='member'): {demoted!r}"
    )
    promoted = admin.users.update(org_id, second.id, email=second_email, role_ids=[admin_role]).data
    assert promoted is not None and promoted.role == "admin", f"users.update(role_ids=[Admin]): {promoted!r}"
    assert admin.users.get(org_id, second.id).data.role == "admin", "users.get after promotion"

    deleted = admin.users.delete(org_id, fourth.id).data
    assert deleted is not None and deleted.id == fourth.id and deleted.email == fourth_email, (
        f"users.delete must answer the deleted user, got {deleted!r}"
    )
    expect_status(404, admin.users.get, org_id, fourth.id, kind=NotFoundError, what="users.get after delete")
    assert fourth.id not in {u.id for u in admin.users.list(org_id).data or []}, (
        "users.list still includes a deleted user"
    )
    expect_status(
        404, admin.users.get, org_id, str(uuid.uuid4()), kind=NotFoundError, what="users.get(unknown id)"
    )
    expect_status(
        404, admin.users.list, str(uuid.uuid4()), kind=NotFoundError, what="users.list(unknown org)"
    )


def test_user_role_validation(admin, tenants):
    a = tenants.tenant("roleval")
    b = tenants.tenant("roleval-other")
    custom = a.admin.client.permissions.roles.create(name=f"Custom {random_suffix()}").data
    b_role = b.admin.client.permissions.roles.create(name=f"Other {random_suffix()}").data

    def email() -> str:
        return f"v-{random_suffix()}@example.com"

    cases = [
        ("role and role_ids together", {"role": "admin", "role_ids": [a.member_role_id]}),
        ("an unknown role name", {"role": "owner"}),
        ("an unknown role id", {"role_ids": [str(uuid.uuid4())]}),
        ("another org's role id", {"role_ids": [b_role.id]}),
        ("a known and an unknown role id", {"role_ids": [a.member_role_id, str(uuid.uuid4())]}),
    ]
    for label, body in cases:
        expect_status(
            422, admin.users.create, a.id, email=email(), kind=UnprocessableEntityError,
            what=f"users.create with {label}", **body,
        )
        expect_status(
            422, a.admin.client.users.create_current_org_user, email=email(),
            kind=UnprocessableEntityError, what=f"users.create_current_org_user with {label}", **body,
        )
    member = tenants.person(a.id, "member")
    for label, body in cases:
        expect_status(
            422, a.admin.client.users.update_current_org_user, member.id, kind=UnprocessableEntityError,
            what=f"users.update_current_org_user with {label}", **body,
        )
    ids = {u.email for u in admin.users.list(a.id).data or []}
    assert ids == {a.admin.email, member.email}, f"rejected creates still added users: {sorted(ids)}"
    assert admin.users.get(a.id, member.id).data.role_ids == [a.member_role_id], (
        "a rejected update changed the user's roles"
    )

    # A valid mix of a system and a custom role is accepted.
    mixed = admin.users.create(a.id, email=email(), role_ids=[a.member_role_id, custom.id]).data
    assert mixed is not None and set(mixed.role_ids or []) == {a.member_role_id, custom.id}, (
        f"users.create(role_ids=[Member, custom]): {mixed!r}"
    )
    assert mixed.role == "member", f"a user without the Admin role has role {mixed.role!r}"


def test_api_keys_and_forced_revocation(admin, tenants):
    t = tenants.tenant("keys")
    user = tenants.person(t.id, "keyed")
    second = admin.users.create_api_key(t.id, user.id).data.value
    assert second and second != user.key, "a second API key must be a new value"

    for key in (user.key, second):
        me = tenants.client(key).identity.get().data
        assert me is not None and me.id == user.id, f"identity.get with a key of {user.email}: {me!r}"

    third = admin.users.create_api_key(t.id, user.id, force=True).data.value
    assert third and third not in (user.key, second), "force=True must mint a new key"
    for label, key in (("first", user.key), ("second", second)):
        err = expect_status(
            401, tenants.client(key).identity.get, kind=UnauthorizedError,
            what=f"identity.get with the {label} key after create_api_key(force=True)",
        )
        assert err.status_code == 401
    me = tenants.client(third).identity.get().data
    assert me is not None and me.id == user.id, f"identity.get with the new key: {me!r}"
    # The admin's key is untouched by another user's revocation.
    assert t.admin.client.identity.get().data.id == t.admin.id

    expect_status(
        404, admin.users.create_api_key, t.id, str(uuid.uuid4()), kind=NotFoundError,
        what="users.create_api_key(unknown user)",
    )


def test_current_org_user_routes(tenants):
    t = tenants.tenant("cur-users")
    member = tenants.person(t.id, "member")
    pt = t.admin.client

    email = f"invited-{random_suffix()}@example.com"
    invited = pt.users.create_current_org_user(email=email).data
    assert invited is not None and invited.id and invited.email == email, (
        f"users.create_current_org_user: {invited!r}"
    )
    assert invited.organization_id == t.id, f"invited user in org {invited.organization_id!r}"
    assert invited.role == "member" and invited.role_ids == [t.member_role_id], (
        f"a user invited without a role must be a member: {invited!r}"
    )
    admin_email = f"invited-admin-{random_suffix()}@example.com"
    invited_admin = pt.users.create_current_org_user(email=admin_email, role="admin").data
    assert invited_admin is not None and invited_admin.role == "admin", (
        f"users.create_current_org_user(role='admin'): {invited_admin!r}"
    )

    expected = {t.admin.id, member.id, invited.id, invited_admin.id}
    for who, client in (("admin", pt), ("member", member.client)):
        listed = {u.id: u for u in client.users.list_current_org_users().data or []}
        assert set(listed) == expected, (
            f"users.list_current_org_users ({who}) answered {sorted(listed)}, expected {sorted(expected)}"
        )
        got = client.users.get_current_org_user(invited.id).data
        assert got is not None and got.id == invited.id and got.email == email, (
            f"users.get_current_org_user ({who}): {got!r}"
        )
        assert got.organization_id == t.id and got.role_ids == [t.member_role_id], (
            f"users.get_current_org_user ({who}): {got!r}"
        )

    # A Member may read but not change the organization's users.
    mc = member.client
    expect_status(
        403, mc.users.create_current_org_user, email=f"x-{random_suffix()}@example.com",
        kind=ForbiddenError, what="users.create_current_org_user by a Member",
    )
    expect_status(
        403, mc.users.update_current_org_user, invited.id, role="admin", kind=ForbiddenError,
        what="users.update_current_org_user by a Member",
    )
    expect_status(
        403, mc.users.update_current_org_user, member.id, role="admin", kind=ForbiddenError,
        what="users.update_current_org_user by a Member promoting themselves",
    )
    expect_status(
        403, mc.users.delete_current_org_user, invited.id, kind=ForbiddenError,
        what="users.delete_current_org_user by a Member",
    )
    assert pt.users.get_current_org_user(member.id).data.role == "member", "a Member promoted themselves"
    # The partner routes need the partner key even for one's own organization.
    expect_status(
        403, pt.users.list, t.id, kind=ForbiddenError,
        what="users.list(own org) with an admin's key",
    )

    promoted = pt.users.update_current_org_user(invited.id, role="admin").data
    assert promoted is not None and promoted.role == "admin" and promoted.role_ids == [t.admin_role_id], (
        f"users.update_current_org_user(role='admin'): {promoted!r}"
    )
    demoted = pt.users.update_current_org_user(invited.id, role_ids=[t.member_role_id]).data
    assert demoted is not None and demoted.role == "member", f"update to role_ids=[Member]: {demoted!r}"

    deleted = pt.users.delete_current_org_user(invited.id).data
    assert deleted is not None and deleted.id == invited.id and deleted.email == email, (
        f"users.delete_current_org_user must answer the deleted user, got {deleted!r}"
    )
    expect_status(
        404, pt.users.get_current_org_user, invited.id, kind=NotFoundError,
        what="users.get_current_org_user after delete",
    )
    expect_status(
        404, pt.users.delete_current_org_user, str(uuid.uuid4()), kind=NotFoundError,
        what="users.delete_current_org_user(unknown id)",
    )


def test_the_last_admin_stays(tenants):
    t = tenants.tenant("last-admin")
    member = tenants.person(t.id, "member")
    pt = t.admin.client

    expect_status(
        422, pt.users.update_current_org_user, t.admin.id, role="member", kind=UnprocessableEntityError,
        what="demoting the only admin with role='member'",
    )
    expect_status(
        422, pt.users.update_current_org_user, t.admin.id, role_ids=[t.member_role_id],
        kind=UnprocessableEntityError, what="demoting the only admin with role_ids=[Member]",
    )
    # delete_current_org_user declares no 422 in polytomic 25.9.10: the base ApiError.
    expect_status(422, pt.users.delete_current_org_user, t.admin.id, what="deleting the only admin")
    still = pt.users.get_current_org_user(t.admin.id).data
    assert still is not None and still.role == "admin", f"the only admin after rejected changes: {still!r}"

    # With a second admin, the first one may step down and be removed.
    assert pt.users.update_current_org_user(member.id, role="admin").data.role == "admin"
    stepped = pt.users.update_current_org_user(t.admin.id, role="member").data
    assert stepped is not None and stepped.role == "member", f"demotion with another admin left: {stepped!r}"
    expect_status(
        422, member.client.users.delete_current_org_user, member.id,
        what="the (new) only admin deleting themselves",
    )
    removed = member.client.users.delete_current_org_user(t.admin.id).data
    assert removed is not None and removed.email == t.admin.email, f"delete of a former admin: {removed!r}"


# ----------------------------------------------------------------------------- identity


def test_identity_of_each_credential_kind(server, admin, tenants):
    t = tenants.tenant("identity")
    member = tenants.person(t.id, "member")

    me = t.admin.client.identity.get().data
    assert me is not None and me.is_user is True, f"identity.get with a user key: {me!r}"
    assert not me.is_partner and not me.is_organization, f"a user key is only a user: {me!r}"
    assert (me.id, me.email, me.organization_id, me.organization_name, me.role) == (
        t.admin.id, t.admin.email, t.id, t.name, "admin",
    ), f"identity.get with the admin's key: {me!r}"
    mine = member.client.identity.get().data
    assert mine is not None and mine.id == member.id and mine.role == "member", (
        f"identity.get with a Member's key: {mine!r}"
    )

    partner = admin.identity.get().data
    assert partner is not None and partner.is_partner is True, f"identity.get (deployment key): {partner!r}"
    assert not partner.is_user and not partner.is_organization and partner.id is None, (
        f"the deployment key as Bearer is no user or organization: {partner!r}"
    )

    org = Polytomic(base_url=server.base_url, token=None, headers=basic_auth(t.id, server.deployment_key))
    scoped = org.identity.get().data
    assert scoped is not None and scoped.is_organization is True and scoped.organization_id == t.id, (
        f"identity.get with Basic org:deployment-key: {scoped!r}"
    )
    assert not scoped.is_user and not scoped.is_partner and scoped.id is None, (
        f"Basic org:key is an organization caller, not a user or partner: {scoped!r}"
    )
    # Acting inside the org: it sees that org's roles and users.
    role_ids = {r.id for r in org.permissions.roles.list().data or []}
    assert {t.admin_role_id, t.member_role_id} <= role_ids, f"roles seen with Basic auth: {role_ids}"
    user_ids = {u.id for u in org.users.list_current_org_users().data or []}
    assert user_ids == {t.admin.id, member.id}, f"users seen with Basic auth: {user_ids}"


# -------------------------------------------------------------------------------- roles


def test_roles(tenants):
    t = tenants.tenant("roles")
    member = tenants.person(t.id, "member")
    roles = t.admin.client.permissions.roles

    listed = roles.list().data or []
    system = {r.name: r for r in listed if r.system}
    assert set(system) == {"Admin", "Member"}, f"system roles of a new org: {[r.name for r in listed]}"
    assert all(r.organization_id == t.id for r in listed), f"roles of other orgs listed: {listed!r}"

    name = f"Editors {random_suffix()}"
    created = roles.create(name=name).data
    assert created is not None and created.id and created.name == name, f"roles.create: {created!r}"
    assert created.system is False and created.organization_id == t.id, f"roles.create: {created!r}"
    got = roles.get(created.id).data
    assert got is not None and got.id == created.id and got.name == name, f"roles.get: {got!r}"
    assert created.id in {r.id for r in roles.list().data or []}, "roles.list lacks the new role"

    # Members read roles but do not change them.
    assert created.id in {r.id for r in member.client.permissions.roles.list().data or []}, (
        "permissions.roles.list by a Member lacks the custom role"
    )
    mr = member.client.permissions.roles
    expect_status(
        403, mr.create, name=f"Nope {random_suffix()}", kind=ForbiddenError,
        what="roles.create by a Member",
    )
    expect_status(
        403, mr.update, created.id, name="Nope", kind=ForbiddenError,
        what="roles.update by a Member",
    )
    expect_status(403, mr.delete, created.id, kind=ForbiddenError, what="roles.delete by a Member")

    # Names are unique in an org (polytomic declares no 409 here: the base ApiError).
    expect_status(409, roles.create, name=name, what="roles.create with a name already taken")
    other = roles.create(name=f"Other {random_suffix()}").data
    expect_status(409, roles.update, other.id, name=name, what="roles.update to a name already taken")

    renamed = roles.update(created.id, name=f"{name} renamed").data
    assert renamed is not None and renamed.id == created.id and renamed.name == f"{name} renamed", (
        f"roles.update: {renamed!r}"
    )
    assert roles.get(created.id).data.name == f"{name} renamed", "roles.get after rename"

    for label, role_id in (("Admin", t.admin_role_id), ("Member", t.member_role_id)):
        expect_status(
            403, roles.update, role_id, name=f"{label} 2", kind=ForbiddenError,
            what=f"roles.update of the system role {label}",
        )
        expect_status(
            403, roles.delete, role_id, kind=ForbiddenError,
            what=f"roles.delete of the system role {label}",
        )
        assert roles.get(role_id).data.name == label, f"system role {label} changed"

    roles.delete(created.id)
    expect_status(404, roles.get, created.id, kind=NotFoundError, what="roles.get after delete")
    assert created.id not in {r.id for r in roles.list().data or []}, "roles.list still has a deleted role"
    expect_status(404, roles.delete, created.id, kind=NotFoundError, what="roles.delete of a deleted role")
    expect_status(404, roles.get, str(uuid.uuid4()), kind=NotFoundError, what="roles.get(unknown id)")


# ----------------------------------------------------------------------------- policies


def test_policies(tenants):
    t = tenants.tenant("policies")
    other = tenants.tenant("policies-other")
    member = tenants.person(t.id, "member")
    pt = t.admin.client
    policies = pt.permissions.policies
    editors = pt.permissions.roles.create(name=f"Editors {random_suffix()}").data

    listed = policies.list().data or []
    default = [p for p in listed if p.system]
    assert [p.name for p in default] == ["Default"], f"system policies of a new org: {listed!r}"
    default = default[0]
    assert default.organization_id == t.id and default.policy_actions, f"Default policy: {default!r}"

    name = f"editing {random_suffix()}"
    valid = [
        PolicyAction(action="read", role_ids=[editors.id]),
        PolicyAction(action="update", role_ids=[editors.id]),
        PolicyAction(action="delete", role_ids=[editors.id, t.admin_role_id]),
        PolicyAction(action="run", role_ids=[t.member_role_id]),
        PolicyAction(action="connection:create", role_ids=[editors.id]),
        PolicyAction(action="model:update", role_ids=[editors.id]),
        PolicyAction(action="sync:run", role_ids=[t.member_role_id]),
    ]
    created = policies.create(name=name, policy_actions=valid).data
    assert created is not None and created.id and created.name == name, f"policies.create: {created!r}"
    assert created.system is False and created.organization_id == t.id, f"policies.create: {created!r}"
    assert actions_of(created) == actions_of_list(valid), (
        f"policies.create stored {actions_of(created)}, expected {actions_of_list(valid)}"
    )
    got = policies.get(created.id).data
    assert got is not None and got.name == name and actions_of(got) == actions_of_list(valid), (
        f"policies.get: {got!r}"
    )
    assert created.id in {p.id for p in policies.list().data or []}, "policies.list lacks the new policy"

    replaced = [PolicyAction(action="sync:run", role_ids=[editors.id])]
    updated = policies.update(created.id, name=f"{name} v2", policy_actions=replaced).data
    assert updated is not None and updated.name == f"{name} v2", f"policies.update: {updated!r}"
    assert actions_of(updated) == actions_of_list(replaced), f"policies.update actions: {updated!r}"
    again = policies.get(created.id).data
    assert again.name == f"{name} v2" and actions_of(again) == actions_of_list(replaced), (
        f"policies.get after update: {again!r}"
    )

    bad = [
        ("bare create", [PolicyAction(action="create", role_ids=[editors.id])]),
        ("an unknown action", [PolicyAction(action="explode", role_ids=[editors.id])]),
        ("an unknown object type", [PolicyAction(action="widget:read", role_ids=[editors.id])]),
        ("an unknown typed action", [PolicyAction(action="connection:explode", role_ids=[editors.id])]),
        ("an unknown role id", [PolicyAction(action="update", role_ids=[str(uuid.uuid4())])]),
        ("another org's role id", [PolicyAction(action="update", role_ids=[other.member_role_id])]),
    ]
    for label, actions in bad:
        # policies.create/update declare no 422 in polytomic 25.9.10: the base ApiError.
        expect_status(
            422, policies.create, name=f"bad {random_suffix()}", policy_actions=actions,
            what=f"policies.create with {label}",
        )
        expect_status(
            422, policies.update, created.id, name=f"{name} v2", policy_actions=actions,
            what=f"policies.update with {label}",
        )
    assert actions_of(policies.get(created.id).data) == actions_of_list(replaced), (
        "a rejected policies.update changed the policy"
    )

    expect_status(
        403, policies.update, default.id, name="Default", policy_actions=[], kind=ForbiddenError,
        what="policies.update of the system policy",
    )
    expect_status(
        403, policies.delete, default.id, kind=ForbiddenError,
        what="policies.delete of the system policy",
    )
    assert actions_of(policies.get(default.id).data) == actions_of(default), "the system policy changed"

    mp = member.client.permissions.policies
    assert created.id in {p.id for p in mp.list().data or []}, "policies.list by a Member lacks the policy"
    expect_status(
        403, mp.create, name=f"nope {random_suffix()}", policy_actions=replaced, kind=ForbiddenError,
        what="policies.create by a Member",
    )
    expect_status(
        403, mp.update, created.id, name="nope", policy_actions=[], kind=ForbiddenError,
        what="policies.update by a Member",
    )
    expect_status(403, mp.delete, created.id, kind=ForbiddenError, what="policies.delete by a Member")

    policies.delete(created.id)
    expect_status(404, policies.get, created.id, kind=NotFoundError, what="policies.get after delete")
    assert created.id not in {p.id for p in policies.list().data or []}, "policies.list has a deleted policy"
    expect_status(404, policies.get, str(uuid.uuid4()), kind=NotFoundError, what="policies.get(unknown id)")


# ---------------------------------------------------------------------- access in practice


def test_custom_role_and_policies_grant_a_member_access(server, tenants):
    t = tenants.tenant("access")
    member = tenants.person(t.id, "member")
    pt, mc = t.admin.client, member.client
    suffix = random_suffix()

    editors = pt.permissions.roles.create(name=f"Editors {suffix}").data
    creating = pt.permissions.policies.create(
        name=f"editors create {suffix}",
        policy_actions=[PolicyAction(action="connection:create", role_ids=[editors.id])],
    ).data
    assert creating is not None and creating.id, "policies.create (connection:create) returned no id"

    expect_status(
        403, mc.connections.create, name=f"member-{suffix}", type="postgresql",
        configuration=pg_config(server), kind=ForbiddenError,
        what="connections.create by a Member without connection:create",
    )

    first = pt.connections.create(
        name=f"first-{suffix}", type="postgresql", configuration=pg_config(server)
    ).data
    second = pt.connections.create(
        name=f"second-{suffix}", type="postgresql", configuration=pg_config(server)
    ).data
    assert first is not None and first.id and second is not None and second.id, "admin connections.create"

    # The Default policy lets Members read every connection.
    seen = {c.id for c in mc.connections.list().data or []}
    assert {first.id, second.id} <= seen, f"connections.list by a Member: {seen}"
    got = mc.connections.get(first.id).data
    assert got is not None and got.id == first.id, f"connections.get by a Member: {got!r}"

    granted = pt.users.update_current_org_user(member.id, role_ids=[t.member_role_id, editors.id]).data
    assert granted is not None and set(granted.role_ids or []) == {t.member_role_id, editors.id}, (
        f"users.update_current_org_user(role_ids=[Member, Editors]): {granted!r}"
    )
    assert granted.role == "member", f"a Member with a custom role is still a member: {granted!r}"

    own = mc.connections.create(
        name=f"member-{suffix}", type="postgresql", configuration=pg_config(server)
    ).data
    assert own is not None and own.id and own.name == f"member-{suffix}", (
        f"connections.create by an Editor (connection:create): {own!r}"
    )

    updating = pt.permissions.policies.create(
        name=f"editors update {suffix}",
        policy_actions=[PolicyAction(action="update", role_ids=[editors.id])],
    ).data
    attached = pt.connections.update(
        first.id, name=first.name, configuration=pg_config(server), policies=[updating.id]
    ).data
    assert attached is not None and attached.policies == [updating.id], (
        f"connections.update(policies=[{updating.id}]) answered "
        f"policies {attached.policies if attached else None}"
    )

    renamed = mc.connections.update(
        first.id, name=f"first-renamed-{suffix}", configuration=pg_config(server), policies=[updating.id]
    ).data
    assert renamed is not None and renamed.name == f"first-renamed-{suffix}", (
        f"connections.update by an Editor on a connection carrying the update policy: {renamed!r}"
    )
    assert pt.connections.get(first.id).data.name == f"first-renamed-{suffix}", "rename not stored"
    expect_status(
        403, mc.connections.update, second.id, name=f"second-renamed-{suffix}",
        configuration=pg_config(server), kind=ForbiddenError,
        what="connections.update by an Editor on a connection without the update policy",
    )
    expect_status(
        403, mc.connections.delete, first.id, kind=ForbiddenError,
        what="connections.delete by an Editor (the policy grants update, not delete)",
    )
    assert pt.connections.get(second.id).data.name == f"second-{suffix}", (
        "a forbidden update changed a connection"
    )

    # Taking the custom role away takes its grants with it.
    back = pt.users.update_current_org_user(member.id, role_ids=[t.member_role_id]).data
    assert back is not None and back.role_ids == [t.member_role_id], f"role_ids reset: {back!r}"
    expect_status(
        403, mc.connections.create, name=f"member-again-{suffix}", type="postgresql",
        configuration=pg_config(server), kind=ForbiddenError,
        what="connections.create by a Member after losing the Editors role",
    )


# ------------------------------------------------------------------------ cross-organization


def test_other_organizations_objects_do_not_exist(admin, tenants):
    a = tenants.tenant("iso-a")
    b = tenants.tenant("iso-b")
    b_user = tenants.person(b.id, "b-member")
    b_role = b.admin.client.permissions.roles.create(name=f"B role {random_suffix()}").data
    b_policy = b.admin.client.permissions.policies.create(
        name=f"B policy {random_suffix()}",
        policy_actions=[PolicyAction(action="update", role_ids=[b_role.id])],
    ).data
    pt = a.admin.client  # an Admin of org A: allowed everything inside A

    roles, policies, users = pt.permissions.roles, pt.permissions.policies, pt.users
    for role_id, label in ((b_role.id, "custom"), (b.admin_role_id, "system Admin")):
        expect_status(404, roles.get, role_id, kind=NotFoundError, what=f"roles.get(org B's {label} role)")
        expect_status(
            404, roles.update, role_id, name="Hijacked", kind=NotFoundError,
            what=f"roles.update(org B's {label} role)",
        )
        expect_status(
            404, roles.delete, role_id, kind=NotFoundError,
            what=f"roles.delete(org B's {label} role)",
        )
    expect_status(404, policies.get, b_policy.id, kind=NotFoundError, what="policies.get(org B's policy)")
    expect_status(
        404, policies.update, b_policy.id, name="Hijacked", policy_actions=[], kind=NotFoundError,
        what="policies.update(org B's policy)",
    )
    expect_status(
        404, policies.delete, b_policy.id, kind=NotFoundError,
        what="policies.delete(org B's policy)",
    )

    expect_status(
        404, users.get_current_org_user, b_user.id, kind=NotFoundError,
        what="users.get_current_org_user(org B's user)",
    )
    # update_current_org_user declares no 404 in polytomic 25.9.10: the base ApiError.
    expect_status(
        404, users.update_current_org_user, b_user.id, role="admin",
        what="users.update_current_org_user(org B's user)",
    )
    expect_status(
        404, users.delete_current_org_user, b_user.id, kind=NotFoundError,
        what="users.delete_current_org_user(org B's user)",
    )
    expect_status(404, users.list, b.id, kind=NotFoundError, what="users.list(org B) with org A's key")
    expect_status(
        404, users.get, b.id, b_user.id, kind=NotFoundError,
        what="users.get(org B, user) with org A's key",
    )
    expect_status(
        404, users.create_api_key, b.id, b_user.id, kind=NotFoundError,
        what="users.create_api_key(org B, user) with org A's key",
    )
    expect_status(
        404, pt.organization.get, b.id, kind=NotFoundError,
        what="organization.get(org B) with org A's key",
    )

    assert b_role.id not in {r.id for r in roles.list().data or []}, "org A lists org B's role"
    assert b_policy.id not in {p.id for p in policies.list().data or []}, "org A lists org B's policy"
    assert b_user.id not in {u.id for u in users.list_current_org_users().data or []}, (
        "org A lists org B's user"
    )
    assert {o.id for o in pt.organization.list().data or []} <= {a.id}, (
        "org A's key lists other organizations"
    )

    # Org B is untouched.
    bc = b.admin.client
    assert bc.permissions.roles.get(b_role.id).data.name == b_role.name, "org B's role changed"
    assert actions_of(bc.permissions.policies.get(b_policy.id).data) == actions_of(b_policy), (
        "org B's policy changed"
    )
    kept = admin.users.get(b.id, b_user.id).data
    assert kept is not None and kept.role == "member", f"org B's user changed: {kept!r}"
    assert b_user.client.identity.get().data.id == b_user.id, "org B's user's key stopped working"
