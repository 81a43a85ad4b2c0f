"""Store-side process that follows a store's events over HTTP and drives ESC/POS printers."""
