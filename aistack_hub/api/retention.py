"""``GET retention`` (admins): what the cleanup of finished jobs removed, for the admin page."""
from __future__ import annotations

from .base import APIHandler


class RetentionHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.retention.report(self.identity))
