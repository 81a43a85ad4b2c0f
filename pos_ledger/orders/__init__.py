"""Online orders: the application service over `pos_ledger.catalog.orders`."""
