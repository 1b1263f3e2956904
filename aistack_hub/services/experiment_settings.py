"""The experiments' configurable limits and timing (``ExperimentSettings.<trait>``; docs/experiments.md)."""
from __future__ import annotations

from traitlets import Float, Integer
from traitlets.config import Configurable


class ExperimentSettings(Configurable):
    """Limits and timing of experiments (docs/experiments.md)."""

    max_trials = Integer(500, help="Most trials one experiment may ask for ('max_trials' above: 400).").tag(config=True)
    max_parallelism = Integer(32, help="Most trials of one experiment running at once ('parallelism' above: "
                              "400).").tag(config=True)
    pass_interval_s = Float(0.5, help="Seconds between passes (metric ingest, pruning, new trials).").tag(config=True)
    watch_interval_s = Float(0.05, help="Seconds between looks (an lstat each) at running trials' metrics files: "
                             "a new line starts a pass at once (pruning reaches the trial fast).").tag(config=True)
    ingest_after_end_s = Float(120.0, help="A finished job's metrics are still read for this long (its last "
                               "lines).").tag(config=True)
    stop_grace_s = Float(3.0, help="Seconds a pruned trial has to end itself at its next report() (the stop "
                         "marker) before its cancel is requested.").tag(config=True)
    pod_stop_grace_s = Float(15.0, help="The same for a trial in a pod: it learns of the marker at its pod's "
                             "next report to the service (every AISTACK_REPORT_INTERVAL, 2 s), then ends "
                             "itself at its next report(), uploads its output and exits.").tag(config=True)
    page_size = Integer(50, help="Experiments per page of GET experiments.").tag(config=True)
