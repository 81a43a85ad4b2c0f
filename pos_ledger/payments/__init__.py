"""Taking payment: provider interface, the sandbox aggregator, the cashier's payment commands."""
