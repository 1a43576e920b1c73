-- Suspending a tenant or revoking an API client takes effect on tokens already issued (adr/0107, issue 19).
-- Every gateway keeps the set of non-active tenants and revoked clients in memory: it loads it with
-- auth_denylist() and follows changes on the 'fleetstream_auth' channel, which Postgres delivers only
-- when the changing transaction commits.

create or replace function auth_denylist()
returns table (kind text, id text, status text)
language sql stable security definer set search_path = public as $$
    select 'tenant', t.id::text, t.status from tenants t where t.status <> 'active'
    union all
    select 'client', c.client_id, 'revoked' from api_clients c where c.revoked_at is not null
$$;
revoke all on function auth_denylist() from public;
grant execute on function auth_denylist() to fleetstream_app;

-- The same question for one token, when a gateway's listener is not connected (it then asks per request).
create or replace function auth_status(p_tenant_id uuid, p_client_id text)
returns table (tenant_status text, client_revoked boolean)
language sql stable security definer set search_path = public as $$
    select (select t.status from tenants t where t.id = p_tenant_id),
           exists (select 1 from api_clients c where c.client_id = p_client_id and c.revoked_at is not null)
$$;
revoke all on function auth_status(uuid, text) from public;
grant execute on function auth_status(uuid, text) to fleetstream_app;

create or replace function notify_auth_change() returns trigger language plpgsql as $$
begin
    if tg_table_name = 'tenants' then
        if new.status is distinct from old.status then
            perform pg_notify('fleetstream_auth',
                              json_build_object('kind', 'tenant', 'id', new.id, 'status', new.status)::text);
        end if;
    elsif new.revoked_at is distinct from old.revoked_at then
        perform pg_notify('fleetstream_auth', json_build_object(
            'kind', 'client', 'id', new.client_id,
            'status', case when new.revoked_at is null then 'active' else 'revoked' end)::text);
    end if;
    return null;
end $$;

create trigger tenants_notify_auth after update of status on tenants
    for each row execute function notify_auth_change();
create trigger api_clients_notify_auth after update of revoked_at on api_clients
    for each row execute function notify_auth_change();
