"""The service layer of the aistack API: one method per API operation, no HTTP.

Handlers (``aistack_hub.api``) turn a request into a validated model (``models``), call one method here and
map the domain errors (``errors``) to HTTP answers (``aistack_hub.api.errors``). Blocking work leaves the
event loop through ``offload.Offload`` (database and run files in its thread pool, notebook parsing and
papermill inspection in its worker processes). Nothing here imports tornado: ``notebooks`` runs in worker
processes, so this package's ``__init__`` stays empty.
"""
