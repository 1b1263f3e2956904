"""Experiments (issue 13): hyper-parameter search over notebook jobs, with Optuna's samplers and pruners
driven by ask/tell (``study``), the search space (``space``), metric ingest (``ingest``) and the trial views
(``views``). The service (aistack_hub.services.experiments) runs the loop; docs/experiments.md."""
