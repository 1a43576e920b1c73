-- Transactional outbox (adr/0108, issue 19): every control-plane record bound for Kafka is written in the
-- same transaction as the change it describes; a relay in the gateway publishes pending rows in id order
-- and marks them. A change that rolls back never reaches Kafka; one that commits always does, even if the
-- process dies right after the commit.

create table outbox (
    id           bigserial primary key,
    tenant_id    uuid not null references tenants(id) on delete cascade,
    topic        text not null,
    key          bytea not null,
    value        bytea,                     -- null: a tombstone
    created_at   timestamptz not null default now(),
    published_at timestamptz,
    attempts     integer not null default 0,
    last_error   text
);
create index outbox_pending on outbox (id) where published_at is null;

alter table outbox enable row level security;
alter table outbox force row level security;
create policy tenant_isolation on outbox
    using (tenant_id = current_tenant()) with check (tenant_id = current_tenant());

-- Wakes the relay when a writing transaction commits (one notification per transaction and channel).
create or replace function notify_outbox() returns trigger language plpgsql as $$
begin
    perform pg_notify('fleetstream_outbox', '');
    return null;
end $$;
create trigger outbox_notify after insert on outbox for each statement execute function notify_outbox();

-- The relay works across tenants, so it goes through these definer functions only.
create or replace function outbox_pending(p_limit integer)
returns table (id bigint, topic text, key bytea, value bytea, attempts integer)
language sql stable security definer set search_path = public as $$
    select o.id, o.topic, o.key, o.value, o.attempts from outbox o
    where o.published_at is null order by o.id limit p_limit
$$;

create or replace function outbox_mark_published(p_ids bigint[])
returns void language sql volatile security definer set search_path = public as $$
    update outbox set published_at = now(), last_error = null where id = any(p_ids) and published_at is null
$$;

create or replace function outbox_mark_failed(p_ids bigint[], p_error text)
returns void language sql volatile security definer set search_path = public as $$
    update outbox set attempts = attempts + 1, last_error = left(p_error, 500)
    where id = any(p_ids) and published_at is null
$$;

-- Which of these rows are still waiting (a request waits for its own rows before it answers).
create or replace function outbox_unpublished(p_ids bigint[])
returns setof bigint language sql stable security definer set search_path = public as $$
    select o.id from outbox o where o.id = any(p_ids) and o.published_at is null
$$;

create or replace function outbox_backlog()
returns table (pending bigint, oldest timestamptz)
language sql stable security definer set search_path = public as $$
    select count(*), min(created_at) from outbox where published_at is null
$$;

create or replace function outbox_purge(p_older_than interval)
returns bigint language sql volatile security definer set search_path = public as $$
    with gone as (delete from outbox where published_at < now() - p_older_than returning 1)
    select count(*) from gone
$$;

do $$
declare f text;
begin
    foreach f in array array['outbox_pending(integer)', 'outbox_mark_published(bigint[])',
                             'outbox_mark_failed(bigint[], text)', 'outbox_unpublished(bigint[])',
                             'outbox_backlog()', 'outbox_purge(interval)'] loop
        execute format('revoke all on function %s from public', f);
        execute format('grant execute on function %s to fleetstream_app', f);
    end loop;
end $$;
