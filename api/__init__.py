"""HTTP API of pos-ledger (FastAPI): terminal ingest, cashier commands, back office."""
