"""One module per resource of /v1 (plus health, OAuth token and GraphQL endpoints)."""
