-- Typed metrics (adr/0182): a device type may declare its metrics (type, unit, range, enum); the validate
-- agent refuses readings that break a declaration. Published to fleetstream.device-types through the outbox.
alter table device_types add column if not exists metrics jsonb not null default '{}';
