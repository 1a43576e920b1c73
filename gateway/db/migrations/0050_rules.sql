-- Tenant rules (issue 5, adr/0055): the current document per rule plus every version ever saved.
-- RLS ENABLEd and FORCEd on both, one policy on the transaction's tenant, as in 0001_core.sql.

create table rules (
    tenant_id   uuid not null references tenants(id) on delete cascade,
    rule_id     uuid not null default gen_random_uuid(),
    name        text not null check (length(name) between 1 and 100),
    version     integer not null default 1 check (version >= 1),
    enabled     boolean not null default true,
    document    jsonb not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (tenant_id, rule_id)
);

create table rule_versions (
    tenant_id   uuid not null,
    rule_id     uuid not null,
    version     integer not null,
    enabled     boolean not null,
    document    jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (tenant_id, rule_id, version),
    foreign key (tenant_id, rule_id) references rules (tenant_id, rule_id) on delete cascade
);

alter table rules enable row level security;
alter table rules force row level security;
create policy tenant_isolation on rules
    using (tenant_id = current_tenant()) with check (tenant_id = current_tenant());

alter table rule_versions enable row level security;
alter table rule_versions force row level security;
create policy tenant_isolation on rule_versions
    using (tenant_id = current_tenant()) with check (tenant_id = current_tenant());
