-- Control plane core: tenants, their API clients and devices, isolated by row-level security (adr/0004).
-- Every tenant-owned table: RLS ENABLEd and FORCEd, one policy on the transaction's app.tenant_id.
-- With no tenant set, current_tenant() is NULL and every policy is false: queries return nothing.

create or replace function current_tenant() returns uuid
language sql stable as $$ select nullif(current_setting('app.tenant_id', true), '')::uuid $$;

create table tenants (
    id          uuid primary key default gen_random_uuid(),
    name        text not null unique check (length(name) between 1 and 100),
    status      text not null default 'active' check (status in ('active', 'suspended')),
    created_at  timestamptz not null default now()
);

create table api_clients (
    client_id   text primary key,
    tenant_id   uuid not null references tenants(id) on delete cascade,
    name        text not null default '',
    secret_hash text not null,
    scopes      text[] not null,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index on api_clients (tenant_id);

create table devices (
    tenant_id   uuid not null references tenants(id) on delete cascade,
    device_id   text not null check (device_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    status      text not null default 'provisioned'
                check (status in ('provisioned', 'active', 'suspended', 'decommissioned')),
    device_type text,
    tags        text[] not null default '{}',
    attributes  jsonb not null default '{}',
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    last_seen   timestamptz,
    primary key (tenant_id, device_id)
);

alter table tenants enable row level security;
alter table tenants force row level security;
create policy tenant_self on tenants using (id = current_tenant()) with check (id = current_tenant());

alter table api_clients enable row level security;
alter table api_clients force row level security;
create policy tenant_isolation on api_clients
    using (tenant_id = current_tenant()) with check (tenant_id = current_tenant());

alter table devices enable row level security;
alter table devices force row level security;
create policy tenant_isolation on devices
    using (tenant_id = current_tenant()) with check (tenant_id = current_tenant());

-- Token issuance must find a client before any tenant is known: a narrow definer function returns
-- only what verifying one client secret needs.
create or replace function authenticate_client(p_client_id text)
returns table (tenant_id uuid, secret_hash text, scopes text[], tenant_status text)
language sql stable security definer set search_path = public as $$
    select c.tenant_id, c.secret_hash, c.scopes, t.status
    from api_clients c join tenants t on t.id = c.tenant_id
    where c.client_id = p_client_id and c.revoked_at is null
$$;
revoke all on function authenticate_client(text) from public;
