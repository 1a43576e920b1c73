"""PostgreSQL sessions (tenant-scoped, row-level security) and the SQL migrations."""
