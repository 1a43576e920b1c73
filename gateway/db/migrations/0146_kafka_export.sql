-- A tenant's continuous Kafka export (adr/0146): while on, the validate agent copies each of the tenant's
-- validated readings to its own topic fleetstream.export.<tenant_id>, which its Kafka credentials (adr/0145) read.
-- A column of the tenant's row (RLS: tenant_self lets a tenant's transaction read and change only its own row):
-- the tenant entry on fleetstream.tenants is written whole from this row through the outbox (adr/0108), so the
-- switch and the tenant's status reach the stream agents together, in commit order.
alter table tenants add column export_telemetry boolean not null default false;
