"""Control-plane queries, one module per table family, always inside a tenant-scoped (RLS) transaction."""
