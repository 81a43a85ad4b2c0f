"""Pure-Python twins of the compiled `pos_ledger._core` functions.

Each module gives the same answers as its Rust counterpart on the same inputs (the tests check
this with hypothesis) and is the baseline the benchmarks compare against. They are slow on
purpose: written for clarity, with integers and hashlib only.
"""
