"""The hub admin page: tenants and quotas (edit in place), members and emergency permission, live usage,
the GPU inventory with what runs on each GPU, the job queue, GPU-hours per tenant per day, alarms.

``handlers``: (pattern, HandlerClass) relative to the aistack service prefix (``admin/...``).
"""
from .handlers import handlers

__all__ = ["handlers"]
