"""The parts of `bench/saga_chaos.py` that do not fit in it: its world (deals, faults, the
twins' databases), the bench's own moves (time, change orders, terminations) and the counts."""
