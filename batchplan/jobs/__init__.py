"""Jobs: everything that talks to the Batch API or reads what it returned.
The file rules the service enforces (``rules``) and ``split`` into parts it
takes; the ``openai`` client (``client``, the only importer of openai) and the
create-at-most-once submission (``submit``) behind the budget guard
(``guard``) and the local ``ledger``; following a batch (``poll``) and
fetching its files (``download``); reading result lines (``results``),
``reconcile`` (planned against billed) and ``calibrate`` (expected output from
an earlier run).
"""
