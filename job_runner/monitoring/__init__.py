"""GPU monitoring and GPU-aware idle culling (issue 15 B; docs/monitoring.md).

Sources (``samples.SampleSource``): ``nvml.NVMLSource`` (embedded), ``dcgm.DCGMSource`` (Kubernetes),
``feed.FeedSource``/``feed.FileSource`` (fed samples where no GPU exists). ``attribution`` turns a reading
into per-workload samples, ``store`` keeps the bounded history and idle state, ``culling`` decides,
``alarms`` raises alarms, ``monitor.Monitor`` runs the pass.
"""
