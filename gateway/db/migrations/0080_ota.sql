-- OTA firmware updates (issue 8, adr/0080-0082): signed firmware releases, campaigns, per-device jobs.
-- Every tenant-owned table: RLS ENABLEd and FORCEd with the current_tenant() policy (adr/0004).

-- A release is immutable: (tenant, device type, version) is its identity and is never updated.
create table firmware_releases (
    tenant_id     uuid not null references tenants(id) on delete cascade,
    device_type   text not null check (device_type ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    version       text not null check (length(version) between 1 and 128),
    sha256        text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    size          bigint not null check (size >= 0),
    manifest_json text not null,   -- the exact bytes that were signed
    signature     text not null,   -- base64 Ed25519 signature over manifest_json
    key_id        text not null,
    created_at    timestamptz not null default now(),
    primary key (tenant_id, device_type, version)
);

create table ota_campaigns (
    id                 uuid primary key default gen_random_uuid(),
    tenant_id          uuid not null references tenants(id) on delete cascade,
    name               text not null default '',
    device_type        text not null,
    target_version     text not null,
    selector           jsonb not null,            -- {"tags": [...]} or {"device_ids": [...]}
    waves              integer[] not null,        -- cumulative percentages, last one 100
    soak_s             integer not null check (soak_s >= 0),
    max_concurrent     integer not null check (max_concurrent >= 1),
    failure_threshold  double precision not null check (failure_threshold >= 0 and failure_threshold <= 1),
    on_threshold       text not null check (on_threshold in ('pause', 'abort')),
    rollback           text not null check (rollback in ('none', 'failed', 'failed_or_silent')),
    device_deadline_s  integer not null check (device_deadline_s >= 1),
    redeliver_s        integer not null check (redeliver_s >= 1),
    state              text not null default 'running'
                       check (state in ('running', 'paused', 'aborted', 'cancelled', 'completed')),
    current_wave       integer not null default 0,
    failure_baseline   integer not null default 0,  -- failures an operator accepted by resuming
    wave_started_at    timestamptz not null default now(),
    wave_done_at       timestamptz,
    reason             text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    foreign key (tenant_id, device_type, target_version)
        references firmware_releases(tenant_id, device_type, version)
);
create index on ota_campaigns (tenant_id, created_at desc);
create index ota_campaigns_running on ota_campaigns (state) where state = 'running';

create table ota_campaign_devices (
    tenant_id      uuid not null,
    campaign_id    uuid not null references ota_campaigns(id) on delete cascade,
    device_id      text not null,
    wave           integer not null,
    state          text not null default 'pending',
    reason         text,
    from_version   text,
    progress       jsonb not null default '{}',
    attempts       integer not null default 0,
    sent_at        timestamptz,               -- first job delivery: the device deadline runs from here
    last_sent_at   timestamptz,
    reported_at    timestamptz,
    updated_at     timestamptz not null default now(),
    primary key (campaign_id, device_id)
);
create index on ota_campaign_devices (tenant_id, campaign_id, wave, state);

-- Every command the campaign driver sent, so a device's answer maps back to its job (redeliveries
-- carry fresh command ids).
create table ota_commands (
    tenant_id    uuid not null,
    command_id   text primary key,
    campaign_id  uuid not null references ota_campaigns(id) on delete cascade,
    device_id    text not null,
    kind         text not null check (kind in ('update', 'rollback', 'cancel')),
    sent_at      timestamptz not null default now()
);
create index on ota_commands (tenant_id, campaign_id, device_id);

do $$
declare t text;
begin
    foreach t in array array['firmware_releases', 'ota_campaigns', 'ota_campaign_devices', 'ota_commands'] loop
        execute format('alter table %I enable row level security', t);
        execute format('alter table %I force row level security', t);
        execute format('create policy tenant_isolation on %I using (tenant_id = current_tenant()) '
                       'with check (tenant_id = current_tenant())', t);
    end loop;
end $$;

-- The campaign driver must find its work before it knows the tenants; this returns ids only, and the
-- driver then works on each campaign inside that tenant's own transaction. Work: a running or paused
-- campaign, or any campaign with jobs still in flight or owed a rollback instruction.
create or replace function ota_campaigns_to_drive()
returns table (tenant_id uuid, campaign_id uuid)
language sql stable security definer set search_path = public as $$
    select c.tenant_id, c.id from ota_campaigns c
    where c.state in ('running', 'paused')
       or exists (select 1 from ota_campaign_devices j where j.campaign_id = c.id and (
              j.state = 'rollback_sent'
           or (c.rollback <> 'none' and j.state = 'failed')
           or (c.rollback = 'failed_or_silent' and j.state = 'timed_out')
           or (c.state <> 'cancelled'
               and j.state in ('sent', 'downloading', 'downloaded', 'verifying', 'installing', 'rebooting'))))
$$;
revoke all on function ota_campaigns_to_drive() from public;
grant execute on function ota_campaigns_to_drive() to fleetstream_app;
