-- Sub-devices registered on first sight (adr/0158): the control plane counts a parent's sub-devices (its
-- attribute ``parent``) under the parent's row lock before it takes another one.
create index if not exists devices_parent on devices (tenant_id, (attributes->>'parent'))
    where attributes ? 'parent';
