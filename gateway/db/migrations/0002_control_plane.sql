-- Control plane (issue 3): device types, device credentials, claim tokens, audit log, device online state.
-- Every tenant-owned table: RLS ENABLEd and FORCEd with the current_tenant() policy (adr/0004, adr/0030).

-- A platform administrator manages tenants (never their devices): a second permissive policy on the
-- tenants table only, switched on per transaction by the gateway after verifying a platform token.
create or replace function platform_admin() returns boolean
language sql stable as $$ select coalesce(current_setting('app.platform_admin', true), '') = 'on' $$;

create policy platform_admin on tenants using (platform_admin()) with check (platform_admin());

-- Tenants are never hard-deleted (the audit log is append-only and data is kept per retention).
alter table tenants drop constraint tenants_status_check;
alter table tenants add constraint tenants_status_check check (status in ('active', 'suspended', 'deleted'));

alter table devices add column online boolean not null default false;
alter table devices add column last_connected_at timestamptz;
alter table devices add column decommissioned_at timestamptz;
alter table devices add column version bigint not null default 0;
create index devices_tags on devices using gin (tags);
create index devices_type on devices (tenant_id, device_type);
create index devices_status on devices (tenant_id, status);

create table device_types (
    tenant_id   uuid not null references tenants(id) on delete cascade,
    name        text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    description text not null default '',
    -- a profile: defaults every device of this type starts with
    default_attributes jsonb not null default '{}',
    default_tags text[] not null default '{}',
    created_at  timestamptz not null default now(),
    primary key (tenant_id, name)
);

create table device_certificates (
    tenant_id   uuid not null,
    device_id   text not null,
    serial      text not null,
    fingerprint_sha256 text not null,
    status      text not null default 'active' check (status in ('active', 'revoked')),
    not_after   timestamptz not null,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz,
    primary key (tenant_id, serial),
    foreign key (tenant_id, device_id) references devices(tenant_id, device_id) on delete cascade
);
create index on device_certificates (tenant_id, device_id);

-- ES256 public keys a device signs its own HTTP/CoAP JWTs with. key_id = base64url(sha256(SPKI DER)):
-- globally unique, so a verifier finds tenant and device from the key, never from the token's claims.
create table device_keys (
    key_id      text primary key,
    tenant_id   uuid not null,
    device_id   text not null,
    public_key_pem text not null,
    algorithm   text not null default 'ES256' check (algorithm = 'ES256'),
    status      text not null default 'active' check (status in ('active', 'revoked')),
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz,
    foreign key (tenant_id, device_id) references devices(tenant_id, device_id) on delete cascade
);
create index on device_keys (tenant_id, device_id);

create table claim_tokens (
    id          uuid primary key default gen_random_uuid(),
    tenant_id   uuid not null references tenants(id) on delete cascade,
    token_hash  text not null unique,  -- sha256 of the secret; the secret is shown once
    name        text not null default '',
    device_type text,
    tags        text[] not null default '{}',
    expires_at  timestamptz not null,
    max_uses    integer not null check (max_uses between 1 and 1000000),
    used_count  integer not null default 0,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index on claim_tokens (tenant_id);

create table audit_log (
    id          bigserial primary key,
    tenant_id   uuid not null references tenants(id) on delete cascade,
    actor       text not null,
    action      text not null,
    target      text not null,
    details     jsonb not null default '{}',
    at          timestamptz not null default now()
);
create index on audit_log (tenant_id, at desc);

-- The audit log is append-only for the application.
create or replace function audit_log_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_log is append-only';
end $$;
create trigger audit_log_append_only before update or delete on audit_log
    for each row execute function audit_log_append_only();

do $$
declare t text;
begin
    foreach t in array array['device_types', 'device_certificates', 'device_keys', 'claim_tokens', 'audit_log'] loop
        execute format('alter table %I enable row level security', t);
        execute format('alter table %I force row level security', t);
        execute format('create policy tenant_isolation on %I using (tenant_id = current_tenant()) '
                       'with check (tenant_id = current_tenant())', t);
    end loop;
end $$;

-- Before any tenant is known, two narrow definer functions answer exactly one question each.

-- Device JWT verification: which tenant/device owns this key (HTTP ingest; CoAP reads the registry topic).
create or replace function device_key_by_id(p_key_id text)
returns table (tenant_id uuid, device_id text, public_key_pem text, device_status text)
language sql stable security definer set search_path = public as $$
    select k.tenant_id, k.device_id, k.public_key_pem, d.status
    from device_keys k join devices d on d.tenant_id = k.tenant_id and d.device_id = k.device_id
    where k.key_id = p_key_id and k.status = 'active'
$$;
revoke all on function device_key_by_id(text) from public;

-- Fleet provisioning: spend one use of a claim token atomically. Only a valid token is charged; the
-- caller's transaction rolls the use back if provisioning then fails.
create or replace function claim_token_use(p_token_hash text)
returns table (outcome text, tenant_id uuid, device_type text, tags text[])
language plpgsql volatile security definer set search_path = public as $$
declare r claim_tokens%rowtype;
begin
    select * into r from claim_tokens c where c.token_hash = p_token_hash for update;
    if not found or r.revoked_at is not null then
        return query select 'invalid'::text, null::uuid, null::text, null::text[];
    elsif r.expires_at <= now() then
        return query select 'expired'::text, r.tenant_id, null::text, null::text[];
    elsif r.used_count >= r.max_uses then
        return query select 'exhausted'::text, r.tenant_id, null::text, null::text[];
    else
        update claim_tokens c set used_count = c.used_count + 1 where c.id = r.id;
        return query select 'ok'::text, r.tenant_id, r.device_type, r.tags;
    end if;
end $$;
revoke all on function claim_token_use(text) from public;
grant execute on function device_key_by_id(text) to fleetstream_app;
grant execute on function claim_token_use(text) to fleetstream_app;
