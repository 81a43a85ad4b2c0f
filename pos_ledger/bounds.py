"""Every account's running totals stay inside what the balances table holds (PostgreSQL bigint).

An account's debits and its credits are each summed in a `BIGINT` column
(`ledger_balances`), and its balance is their difference: so both sums, and
hence the balance in either direction, must stay within `BALANCE_MINOR_MAX`
(2^63 - 1). An event whose postings would take any account past it is refused
with reason `amount_overflow` before anything is written (on SQLite the column
would silently turn REAL; on PostgreSQL the insert failed and the store could
no longer sell). The totals live in the store's state: folded from each entry's
stored postings on replay, added as each event is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from pos_ledger.events import EventRejected, Posting
from pos_ledger.state import StoreState

BALANCE_MINOR_MAX: Final = 2**63 - 1


@dataclass(slots=True)
class AccountTotals:
    #: (account, currency) -> [debits, credits], both as positive sums.
    sums: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def check(self, postings: Iterable[Posting]) -> None:
        """EventRejected('amount_overflow') if the postings would take an account past the bound."""
        added: dict[tuple[str, str], list[int]] = {}
        for account, currency_code, amount in postings:
            side = added.setdefault((account, currency_code), [0, 0])
            side[0 if amount > 0 else 1] += abs(amount)
        for key, (debit, credit) in added.items():
            before = self.sums.get(key, (0, 0))
            if before[0] + debit > BALANCE_MINOR_MAX or before[1] + credit > BALANCE_MINOR_MAX:
                raise EventRejected("amount_overflow",
                                    f"account {key[0]} ({key[1]}) would pass {BALANCE_MINOR_MAX} minor units")

    def add(self, postings: Iterable[Posting]) -> None:
        for account, currency_code, amount in postings:
            side = self.sums.setdefault((account, currency_code), [0, 0])
            side[0 if amount > 0 else 1] += abs(amount)


def account_totals(state: StoreState) -> AccountTotals:
    return state.feature("account_totals", AccountTotals)
