"""The workforce bench's parts: the lifecycle changes it enters in the HCM twin and what each
worker must end up as (`plan.py`), the PSA / ERP fakes that keep a log of every write and the
checks read from them (`ledger.py`), and the naive one-workflow-per-change baseline
(`naive.py`, its activity in `naive_apply.py`)."""
