"""The hub admin page: tenants and quotas (edit in place), members and emergency permission, live usage,
the GPU inventory with what runs on each GPU, the job queue, GPU-hours per tenant per day, alarms;
``api-proxy/<path>`` (proxy.py) forwards the page scripts' allow-listed API calls with the viewer's token.

``handlers``: (pattern, HandlerClass) relative to the aistack service prefix (``admin/...``).
"""
from .handlers import handlers as _page
from .proxy import handlers as _proxy  # api-proxy/<path>: the page scripts' calls with the viewer's token

handlers = _proxy + _page
__all__ = ["handlers"]
