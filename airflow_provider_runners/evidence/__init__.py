"""The evidence ledger: append-only, hash-chained JSON entries per runner lineage."""
