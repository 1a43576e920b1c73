-- Human users of a tenant (issue 17, adr/0160): a role each (owner, admin, operator, viewer → a set of API
-- scopes, gateway/auth/roles.py), a built-in password (argon2id) and/or a single sign-on subject.
create table users (
    id            uuid primary key default gen_random_uuid(),
    tenant_id     uuid not null references tenants(id) on delete cascade,
    email         text not null check (email = lower(email) and length(email) between 3 and 254
                                       and email ~ '^[^@\s]+@[^@\s]+$'),
    name          text not null default '' check (length(name) <= 200),
    role          text not null check (role in ('owner', 'admin', 'operator', 'viewer')),
    password_hash text,                      -- argon2id; null: single sign-on only
    oidc_subject  text,                      -- the provider's `sub`, bound at the first SSO sign-in
    failed_logins integer not null default 0,
    locked_until  timestamptz,
    disabled_at   timestamptz,
    last_login_at timestamptz,
    created_at    timestamptz not null default now(),
    unique (tenant_id, email)
);
create unique index users_oidc_subject on users (tenant_id, oidc_subject) where oidc_subject is not null;

-- Single sign-on per tenant (adr/0165): the provider, this platform's client at it, and claim → role.
create table tenant_sso (
    tenant_id     uuid primary key references tenants(id) on delete cascade,
    issuer        text not null check (issuer ~ '^https?://'),
    client_id     text not null,
    client_secret text not null,
    role_claim    text not null default 'groups',
    role_map      jsonb not null default '{}',   -- claim value → role
    default_role  text check (default_role in ('admin', 'operator', 'viewer')),  -- null: unmapped users refused
    updated_at    timestamptz not null default now()
);

do $$
declare t text;
begin
    foreach t in array array['users', 'tenant_sso'] loop
        execute format('alter table %I enable row level security', t);
        execute format('alter table %I force row level security', t);
        execute format('create policy tenant_isolation on %I using (tenant_id = current_tenant()) '
                       'with check (tenant_id = current_tenant())', t);
    end loop;
end $$;

-- Sign-in starts before a tenant is known: the tenant's name (unique) or id → its id and status; the rest
-- of the sign-in runs in that tenant's transaction, under RLS.
create or replace function tenant_for_login(p_tenant text)
returns table (id uuid, status text)
language sql stable security definer set search_path = public as $$
    select t.id, t.status from tenants t where t.name = p_tenant or t.id::text = lower(p_tenant) limit 1
$$;
revoke all on function tenant_for_login(text) from public;
grant execute on function tenant_for_login(text) to fleetstream_app;

-- A disabled user's session tokens are refused at once, like a revoked API client's (adr/0107): tokens of
-- users carry sub = 'user:<id>', so the deny list names them as clients.
create or replace function auth_denylist()
returns table (kind text, id text, status text)
language sql stable security definer set search_path = public as $$
    select 'tenant', t.id::text, t.status from tenants t where t.status <> 'active'
    union all
    select 'client', c.client_id, 'revoked' from api_clients c where c.revoked_at is not null
    union all
    select 'client', 'user:' || u.id::text, 'revoked' from users u where u.disabled_at is not null
$$;

create or replace function auth_status(p_tenant_id uuid, p_client_id text)
returns table (tenant_status text, client_revoked boolean)
language sql stable security definer set search_path = public as $$
    select (select t.status from tenants t where t.id = p_tenant_id),
           exists (select 1 from api_clients c where c.client_id = p_client_id and c.revoked_at is not null)
           or exists (select 1 from users u where 'user:' || u.id::text = p_client_id and u.disabled_at is not null)
$$;

create or replace function notify_user_auth_change() returns trigger language plpgsql as $$
begin
    if new.disabled_at is distinct from old.disabled_at then
        perform pg_notify('fleetstream_auth', json_build_object(
            'kind', 'client', 'id', 'user:' || new.id::text,
            'status', case when new.disabled_at is null then 'active' else 'revoked' end)::text);
    end if;
    return null;
end $$;

create trigger users_notify_auth after update of disabled_at on users
    for each row execute function notify_user_auth_change();
