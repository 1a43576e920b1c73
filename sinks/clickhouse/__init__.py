"""The ClickHouse sink: batch Avro decoding to rows, idempotent inserts, rollups, and the read layer
(``store``) the gateway queries; ``client`` speaks to chdb (embedded) or a ClickHouse server."""
