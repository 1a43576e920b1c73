-- Tenant Kafka credentials (adr/0145): one SASL/SCRAM-SHA-512 user per row, with read ACLs on the tenant's
-- export topic and its own consumer-group prefix. No secret here: the password is shown once and Kafka keeps
-- only its salted SCRAM hash. The row is written before Kafka is touched and settled after (pending ->
-- active or pending -> failing -> failed; active -> revoking -> revoked), so a crash in between leaves a row
-- that says what to finish or undo.
create table kafka_credentials (
    id            uuid primary key default gen_random_uuid(),
    tenant_id     uuid not null references tenants(id) on delete cascade,
    username      text not null unique,
    name          text not null default '',
    status        text not null default 'pending'
                  check (status in ('pending', 'active', 'revoking', 'revoked', 'failing', 'failed')),
    topics        text[] not null,
    group_prefix  text not null,
    created_by    text not null,
    created_at    timestamptz not null default now(),
    activated_at  timestamptz,
    revoked_at    timestamptz,
    last_error    text
);
create index on kafka_credentials (tenant_id, created_at);
create index kafka_credentials_unsettled on kafka_credentials (created_at) where status in ('pending', 'failing', 'revoking');

alter table kafka_credentials enable row level security;
alter table kafka_credentials force row level security;
create policy tenant_isolation on kafka_credentials
    using (tenant_id = current_tenant()) with check (tenant_id = current_tenant());

-- The gateway's start-up sweep must find unsettled rows before it knows the tenants; ids only, each row is
-- then settled inside its own tenant's transaction (as ota_campaigns_to_drive does).
create or replace function kafka_credentials_unsettled(p_older_than interval)
returns table (tenant_id uuid, credential_id uuid)
language sql stable security definer set search_path = public as $$
    select k.tenant_id, k.id from kafka_credentials k
    where (k.status = 'pending' and k.created_at < now() - p_older_than) or k.status in ('failing', 'revoking')
$$;
revoke all on function kafka_credentials_unsettled(interval) from public;
grant execute on function kafka_credentials_unsettled(interval) to fleetstream_app;
