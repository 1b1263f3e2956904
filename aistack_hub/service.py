"""The ``aistack`` JupyterHub service: ``python -m aistack_hub.service``.

One tornado application under the service prefix (``$JUPYTERHUB_SERVICE_PREFIX``, default
``/services/aistack/``): the REST API (``api/``), the admin page (``admin/``, ``aistack_hub.admin``),
Prometheus metrics (``metrics``), and the scheduling loop (``job_runner.controller``) with its executor.
The API's work is done by ``aistack_hub.services`` over one ``Offload``: the thread pool and worker
processes that keep blocking work off this process's event loop. Settings are traitlets: the deployment
config file given by ``--config`` (YAML: traitlets sections such as ``AIStackService:``, and the
tenants/profiles/inventory data; ``aistack_hub.config``), and command-line flags
(``--AIStackService.db_url=...``), which win.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import signal
import sys
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, CaselessStrEnum, Float, Integer, Unicode, default
from traitlets.config import Application, catch_config_error

from aistack_hub.metrics import HealthHandler, MetricsHandler
from aistack_hub.api import api_handlers
from aistack_hub.api.base import APISettings
from aistack_hub.config import apply_config_file
from aistack_hub.services import notebooks
from aistack_hub.services.bundle import Services
from aistack_hub.services.context import ServiceContext
from aistack_hub.services.limits import Limits
from aistack_hub.services.offload import Offload
from aistack_hub.services.reconcile import HubServers, HubUnavailable
from job_runner.controller import Controller
from job_runner.db import open_database
from job_runner.db.tenants import seed_tenants


def _env(name, fallback=""):
    return os.environ.get(name) or fallback


class AIStackService(Application):
    name = "aistack-service"
    description = "The aistack JupyterHub service: notebook job queue, GPU-slice allocations, REST API"

    aliases = {
        "config": "AIStackService.config_file",
        "db-url": "AIStackService.db_url",
        "port": "AIStackService.port",
        "ip": "AIStackService.ip",
        "data-dir": "AIStackService.data_dir",
        "executor": "AIStackService.executor_class",
        "log-level": "Application.log_level",
    }

    config_file = Unicode("", help="The deployment config file (YAML: traitlets sections, tenants, profiles, "
                          "inventory; aistack_hub.config).").tag(config=True)
    inventory_source = Unicode("configured", help="Where the inventory came from, as GET inventory reports it: "
                               "'configured', or 'nvml' (aistack-hub up discovered this machine's GPUs).").tag(config=True)
    data_dir = Unicode(help="Where the service keeps its files (jobs, secrets); default ./.aistack.").tag(config=True)

    @default("data_dir")
    def _data_default(self):
        return os.path.abspath(".aistack")

    db_url = Unicode(help="SQLAlchemy URL: sqlite:///file (default) or postgresql://... Env: AISTACK_DB_URL.").tag(config=True)

    @default("db_url")
    def _db_default(self):
        return _env("AISTACK_DB_URL", f"sqlite:///{os.path.join(self.data_dir, 'aistack.sqlite')}")

    ip = Unicode("127.0.0.1", help="Address to listen on.").tag(config=True)
    port = Integer(help="Port (default: from $JUPYTERHUB_SERVICE_URL, else 10101).").tag(config=True)

    @default("port")
    def _port_default(self):
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        if url and urlparse(url).port:
            return urlparse(url).port
        return 10101

    service_prefix = Unicode(help="URL prefix (default $JUPYTERHUB_SERVICE_PREFIX or /services/aistack/).").tag(config=True)

    @default("service_prefix")
    def _prefix_default(self):
        p = _env("JUPYTERHUB_SERVICE_PREFIX", "/services/aistack/")
        return p if p.endswith("/") else p + "/"

    executor_class = Unicode("job_runner.executors.local.LocalExecutor",
                             help="Import path of the executor class (LocalExecutor, NoopExecutor, KubernetesExecutor).").tag(config=True)
    jobs_dir = Unicode(help="Directory of the jobs' files (default <data_dir>/jobs).").tag(config=True)

    @default("jobs_dir")
    def _jobs_default(self):
        return os.path.join(self.data_dir, "jobs")

    notebook_root = Unicode("", help="Path submissions: where '{user}'s notebooks are ('' = content only), "
                            "e.g. /home/{user}.").tag(config=True)
    validate_kernels = Bool(True, help="Refuse jobs whose kernel is not installed here (local executor).").tag(config=True)
    max_body_bytes = Integer(16 * 1024 * 1024, help="Largest request body (bytes) the API accepts.").tag(config=True)
    job_token_secret = Unicode(help="Secret for per-job pod tokens, shared by all replicas (default: "
                               "$AISTACK_JOB_TOKEN_SECRET, else a file in data_dir).").tag(config=True)

    @default("job_token_secret")
    def _job_token_secret_default(self):
        return _env("AISTACK_JOB_TOKEN_SECRET")
    cookie_secret = Unicode(help="""Key of the admin page's signed cookies (its login and the OAuth state
        of a login in progress): every replica must have the same one, else a login started on one replica
        fails on another. Default: $AISTACK_COOKIE_SECRET, else derived from job_token_secret (which the
        chart's Secret already shares between replicas).""").tag(config=True)

    @default("cookie_secret")
    def _cookie_secret_default(self):
        return _env("AISTACK_COOKIE_SECRET")

    run_files = CaselessStrEnum(["auto", "files", "database"], "auto", help="""Where what job pods send (output
        notebooks, logs, progress, results) is kept: 'files' (jobs_dir, one process's folder), 'database' (the
        table run_files, read by every replica: the cluster deployment), 'auto': the database when it is
        PostgreSQL (replicas) and the executor runs jobs in pods, else files. The LocalExecutor's jobs always
        write their own files.""").tag(config=True)
    admin_proxy_max_body_bytes = Integer(1024 * 1024, help="""Largest request body (bytes) the admin page's
        api-proxy forwards (its scripts' writes: prices, budgets, storage, environments); larger: 413.""").tag(config=True)
    admin_proxy_timeout_s = Float(60.0, help="""Seconds the admin page's api-proxy waits for the API before it
        answers 504 (a report over a long period is the slowest call it makes).""").tag(config=True)
    run_scheduler = Bool(True, help="Take part in the leader election and run the scheduling loop.").tag(config=True)
    hub_token_is_admin = Bool(True, help="Treat the service's own API token as the hub (admin).").tag(config=True)
    shutdown_grace_s = Float(5.0, help="Seconds to finish requests on SIGTERM.").tag(config=True)
    io_threads = Integer(8, help="Threads for the API's blocking work (database sessions, SQLite's write lock, "
                         "run-file reads); also the event loop's default executor.").tag(config=True)
    switch_interval_s = Float(0.0005, help="The interpreter's thread switch interval (sys.setswitchinterval; "
                              "Python's default is 0.005). The scheduling pass runs in a thread of this process: "
                              "a thread that waited for I/O (the event loop, a database call) gets the GIL back "
                              "after at most this long, so an answer is not delayed by 5 ms per wait "
                              "while a long pass computes.").tag(config=True)
    notebook_workers = Integer(2, help="Worker processes for the CPU-heavy notebook work of the API (decoding "
                               "up to max_body_bytes, nbformat validation, papermill inspection); 0: in the "
                               "threads instead, where it holds the GIL against the event loop.").tag(config=True)
    exit_with_parent = Bool(True, help="Stop when the process that started this one (the hub, for a hub-managed "
                            "service) is gone, instead of living on as an orphan. Running local jobs go on and "
                            "are re-adopted by the next start.").tag(config=True)

    metrics_token = Unicode(help="""A token Prometheus sends to read /metrics (``Authorization: Bearer <token>``;
        it may also read /health). Default: $AISTACK_METRICS_TOKEN; empty: only JupyterHub tokens (the hub's,
        an admin's, or one with the scope custom:aistack:metrics) read every series.""").tag(config=True)

    @default("metrics_token")
    def _metrics_token_default(self):
        return _env("AISTACK_METRICS_TOKEN")

    reconcile_interval_s = Float(60.0, help="""Seconds between reconciliations of server slices with the hub:
        the leader releases every pending or allocated slice whose server is neither running nor starting in
        the hub (all pages of its user list), logs it and records the reason (GET allocations/released).
        0 turns it off (the spawner still releases on stop, on a failed or cancelled start, and when its
        poll sees the server gone).""").tag(config=True)

    reconcile_first_s = Float(5.0, help="""Seconds after the service starts before its first reconciliation
        (a restarted service frees what no server holds any more).""").tag(config=True)

    hub_page_size = Integer(200, help="Users per page asked of the hub's GET users (JupyterHub caps it at its "
                            "api_page_max_limit; the reconciliation follows every page).").tag(config=True)

    @catch_config_error
    def initialize(self, argv=None):
        super().initialize(argv)
        self.deployment = apply_config_file(self, self.config_file)
        self.deployment.inventory_source = self.inventory_source
        logging.getLogger("tornado.access").setLevel(logging.WARNING)
        os.makedirs(self.data_dir, exist_ok=True)
        if not self.job_token_secret:
            path = os.path.join(self.data_dir, "job-token-secret")
            if not os.path.exists(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
            with open(path) as f:
                self.job_token_secret = f.read().strip()
        self.db = open_database(self.db_url)
        seed_tenants(self.db, self.deployment.tenants)
        self.executor = self._make_executor()
        run_files = self._make_run_files()
        self.controller = Controller(self.db, self.deployment, self.executor, parent=self)
        self.offload = Offload(self.io_threads, self.notebook_workers)
        self.services = Services(ServiceContext(
            db=self.db, controller=self.controller, deployment=self.deployment, executor=self.executor,
            offload=self.offload, max_body_bytes=self.max_body_bytes, notebook_root=self.notebook_root,
            validate_kernels=self.validate_kernels, job_token_secret=self.job_token_secret, jobs_dir=self.jobs_dir,
            run_files=run_files, limits=Limits(parent=self),
        ))
        # --- experiments (issue 13): its settings from this config ---
        from aistack_hub.services.experiment_settings import ExperimentSettings
        self.services.experiments.settings = ExperimentSettings(parent=self)
        self.hub_auth = self._make_hub_auth()
        if self.hub_auth is not None and self.hub_auth.api_token:
            self.services.allocations.reconciler.hub = HubServers(self.hub_auth.api_url, self.hub_auth.api_token,
                                                                  page_size=self.hub_page_size)
        # --- storage + environments (issue 15 C) ---
        from aistack_hub.services.storage import install as _install_storage

        _install_storage(self)
        # --- end storage + environments ---
        self.api_settings = APISettings(
            services=self.services, hub_auth=self.hub_auth,
            hub_token=os.environ.get("JUPYTERHUB_API_TOKEN", "") if self.hub_token_is_admin else "",
        )
        # --- GPU monitoring + culling (issue 15 B) ---
        from aistack_hub import monitoring_app as _monitoring

        _monitoring.install(self)
        # --- end GPU monitoring ---
        # --- pipelines + schedules (issue 14) ---
        from aistack_hub.services import pipelines_loop as _pipelines

        _pipelines.install(self)
        # --- end pipelines + schedules ---

    def _make_executor(self):
        from importlib import import_module

        mod, _, cls = self.executor_class.rpartition(".")
        klass = getattr(import_module(mod), cls)
        kwargs = {"parent": self}
        if "jobs_dir" in klass.class_trait_names():
            kwargs["jobs_dir"] = self.jobs_dir
        return klass(**kwargs)

    def _make_run_files(self):
        """The run-file store (``run_files``), given to the executor too (it reads what pods sent)."""
        from job_runner.db.runfiles import DBRunFiles
        from job_runner.executors.runfiles import FileRunFiles

        pods = "run_files" in self.executor.trait_names()
        use_db = self.run_files == "database" or (self.run_files == "auto" and self.db.is_postgres and pods)
        store = DBRunFiles(self.db) if use_db else FileRunFiles(self.jobs_dir)
        if pods:
            self.executor.run_files = store
        return store

    def _cookie_key(self) -> bytes:
        if self.cookie_secret:
            return self.cookie_secret.encode()
        return hmac.new(self.job_token_secret.encode(), b"aistack admin cookies", hashlib.sha256).digest()

    def _make_hub_auth(self):
        if not os.environ.get("JUPYTERHUB_API_URL"):
            self.log.warning("JUPYTERHUB_API_URL is not set: only the hub token is accepted")
            return None
        from jupyterhub.services.auth import HubOAuth

        return HubOAuth(parent=self, cache_max_age=60)

    def make_app(self) -> web.Application:
        prefix = self.service_prefix
        guarded = {"api": self.api_settings, "controller": self.controller, "metrics_token": self.metrics_token}
        handlers = [
            (prefix + "metrics", MetricsHandler, guarded),
            (prefix + "health", HealthHandler, guarded),
        ]
        handlers += self._admin_handlers(prefix)
        # --- GPU monitoring + culling (issue 15 B): before the API's catch-all ---
        from aistack_hub import monitoring_app as _monitoring

        handlers += _monitoring.routes(self, prefix)
        # --- end GPU monitoring ---
        handlers += api_handlers(prefix, self.api_settings)
        settings = {"hub_auth": self.hub_auth, "cookie_secret": self._cookie_key(),
                    # the admin page reads through this service's own API, on its own address
                    "aistack_api_base": f"http://{self._own_host()}:{self.port}{prefix}api/",
                    "service_prefix": prefix, "xsrf_cookies": False,
                    "admin_proxy_max_body_bytes": self.admin_proxy_max_body_bytes,
                    "admin_proxy_timeout_s": self.admin_proxy_timeout_s,
                    "static_path": None, "autoreload": False, "log_function": self._log_request}
        return web.Application(handlers, **settings)

    def _own_host(self) -> str:
        return "127.0.0.1" if self.ip in ("", "0.0.0.0") else ("[::1]" if self.ip == "::" else self.ip)

    def _admin_handlers(self, prefix):
        from aistack_hub import admin
        from aistack_hub.admin.oauth import OAuthCallbackHandler

        return [(prefix + "oauth_callback", OAuthCallbackHandler)] + [
            (prefix + pattern, *rest) for pattern, *rest in admin.handlers]

    def _log_request(self, handler):
        status = handler.get_status()
        level = logging.ERROR if status >= 500 else logging.DEBUG
        self.log.log(level, "%d %s %s %.1fms", status, handler.request.method, handler.request.uri,
                     1000 * handler.request.request_time())

    async def serve(self):
        app = self.make_app()
        server = HTTPServer(app, max_body_size=self.max_body_bytes + 1024 * 1024, xheaders=True)
        server.listen(self.port, self.ip)
        self.log.info("aistack service on http://%s:%d%s (db %s, executor %s)", self.ip, self.port,
                      self.service_prefix, self.db.engine.url.render_as_string(hide_password=True),
                      type(self.executor).__name__)
        sys.setswitchinterval(self.switch_interval_s)
        loop = asyncio.get_running_loop()
        self.offload.install(loop)
        self.offload.warm(notebooks.warm)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(self.controller.run_forever()) if self.run_scheduler else None
        parent = os.getppid()

        async def watch_parent():
            while not stop.is_set():
                await asyncio.sleep(2)
                if os.getppid() != parent:
                    self.log.warning("the parent process %s is gone: stopping", parent)
                    stop.set()

        watcher = asyncio.create_task(watch_parent()) if self.exit_with_parent and parent != 1 else None
        reconciler = asyncio.create_task(self._reconcile_forever(stop)) if self.run_scheduler else None
        # --- experiments (issue 13): metric ingest + studies, on the leader ---
        experiments = asyncio.create_task(self.services.experiments.run_forever(
            stop, lambda: self.controller.is_leader)) if self.run_scheduler else None
        # --- GPU monitoring + culling (issue 15 B) ---
        from aistack_hub import monitoring_app as _monitoring

        sampler = asyncio.create_task(_monitoring.run_forever(self, stop)) if self.run_scheduler else None
        # --- end GPU monitoring ---
        # --- tenant storage on Kubernetes (issue 15 C): the claims' usage, measured by scan pods, on the leader
        scans = asyncio.create_task(self.services.storage.run_forever(
            stop, lambda: self.controller.is_leader)) if self.run_scheduler else None
        # --- pipelines + schedules (issue 14): ends by itself when stop is set ---
        from aistack_hub.services import pipelines_loop as _pipelines

        _pipelines_task = asyncio.create_task(_pipelines.run_forever(self, stop))  # noqa: F841
        # --- end pipelines + schedules ---
        await stop.wait()
        for t in (watcher, reconciler, sampler, experiments, scans):  # sampler: GPU monitoring (issue 15 B)
            if t is not None:
                t.cancel()
        self.log.info("stopping")
        server.stop()
        self.controller.stop()
        if task is not None:
            try:
                await asyncio.wait_for(task, self.shutdown_grace_s)
            except asyncio.TimeoutError:
                task.cancel()
        self.offload.shutdown()
        self.db.dispose()

    async def _reconcile_forever(self, stop: asyncio.Event):
        """Every reconcile_interval_s, on the leader: release the slices no hub server holds."""
        rec = self.services.allocations.reconciler
        if self.reconcile_interval_s <= 0 or rec.hub is None:
            return
        delay = self.reconcile_first_s
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except asyncio.TimeoutError:
                pass
            delay = self.reconcile_interval_s
            if not self.controller.is_leader:
                continue
            try:
                await rec.run_once()
            except HubUnavailable as e:
                self.log.warning("reconciliation skipped (nothing released): %s", e)
            except Exception:  # noqa: BLE001 - the next run tries again
                self.log.exception("reconciliation failed")

    def start(self):
        asyncio.run(self.serve())


def main(argv=None):
    app = AIStackService.instance()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    sys.exit(main())
