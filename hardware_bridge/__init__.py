"""Store-side process that follows a store's events over HTTP and drives ESC/POS printers.

`pos-ledger bridge` wires it (`hardware_bridge.bridge.Bridge`): a follower reads the
store's log (SSE, falling back to polling) and turns each entry into print jobs in a
local SQLite journal (`journal.py`); one printer worker prints them in order, exactly
once (`printers.py`); a reporter signs `print.completed` / `print.failed` back to the
store with the bridge's terminal key. `render.py` turns events into ESC/POS bytes.
"""
