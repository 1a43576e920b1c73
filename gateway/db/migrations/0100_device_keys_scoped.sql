-- Device JWT keys belong to one tenant's device, never to the world (adr/0106, issue 19).
-- Before: key_id was the primary key, so the first tenant to register a public key owned it everywhere and a
-- verifier found the tenant from the key. Now a key is unique per (tenant, device, key id), a verifier asks
-- for exactly the tenant and device the token names (iss, sub), and registering needs proof of possession.

alter table device_keys drop constraint device_keys_pkey;
alter table device_keys add primary key (tenant_id, device_id, key_id);
-- when the device proved it holds the private key; null for keys registered before proofs were required
alter table device_keys add column proven_at timestamptz;

drop function if exists device_key_by_id(text);

-- Device JWT verification, before any tenant transaction: the key of this tenant's device with this id,
-- and whether that device and its tenant may send. Nothing else about the tenant is revealed.
create or replace function device_key_lookup(p_tenant_id uuid, p_device_id text, p_key_id text)
returns table (public_key_pem text, device_status text, tenant_status text)
language sql stable security definer set search_path = public as $$
    select k.public_key_pem, d.status, t.status
    from device_keys k
    join devices d on d.tenant_id = k.tenant_id and d.device_id = k.device_id
    join tenants t on t.id = k.tenant_id
    where k.tenant_id = p_tenant_id and k.device_id = p_device_id and k.key_id = p_key_id and k.status = 'active'
$$;
revoke all on function device_key_lookup(uuid, text, text) from public;
grant execute on function device_key_lookup(uuid, text, text) to fleetstream_app;
