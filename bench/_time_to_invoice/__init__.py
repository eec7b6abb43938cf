"""The parts of `bench/time_to_invoice.py` that do not fit in it: its world (projects, entries,
the set-up and the ledger/pipeline helpers) and its timed phases other than the baseline."""
