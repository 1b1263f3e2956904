"""Accounting API (issue 15 A, docs/accounting.md).

- ``GET accounting/report``: usage and cost for a period (``start``/``end`` or ``period``), ``group_by``
  tenant,user,day,gpu_model,kind; ``tenant``/``user`` filters; pages (``limit``/``offset``). CSV with
  ``Accept: text/csv`` or ``?format=csv``.
- ``GET/POST accounting/prices``, ``PUT/DELETE accounting/prices/{id}`` (future versions only).
- ``GET accounting/budgets``, ``PUT/DELETE accounting/budgets/{tenant}``.
- ``GET accounting/reminders``: the caller's over-budget / over-quota reminders (hub, lab).
"""
from __future__ import annotations

from aistack_hub.services.accounting import BudgetBody, PageQuery, PriceBody, ReportQuery
from aistack_hub.services.models import row_id

from .base import APIHandler


class ReportHandler(APIHandler):
    async def get(self):
        q = self.query(ReportQuery, lists=("group_by",))
        if q.format is None and "text/csv" in self.request.headers.get("Accept", ""):
            q = q.model_copy(update={"format": "csv"})
        out = await self.services.accounting.report(self.identity, q)
        if q.format == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="aistack-usage.csv"')
            self.set_header("X-Total-Count", str(out["total"]))
            if out["next_offset"] is not None:
                self.set_header("X-Next-Offset", str(out["next_offset"]))
            self.finish(out["csv"])
            return
        self.write_json(out)


class PricesHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.accounting.prices(self.identity, self.query(PageQuery)))

    async def post(self):
        self.write_json(await self.services.accounting.add_price(self.identity, await self.body(PriceBody)), 201)


class PriceHandler(APIHandler):
    async def put(self, price_id):
        self.write_json(await self.services.accounting.edit_price(self.identity, row_id(price_id),
                                                                  await self.body(PriceBody)))

    async def delete(self, price_id):
        await self.services.accounting.edit_price(self.identity, row_id(price_id), None)
        self.set_status(204)
        self.finish()


class BudgetsHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.accounting.budgets(self.identity, self.query(PageQuery)))


class BudgetHandler(APIHandler):
    async def put(self, tenant):
        self.write_json(await self.services.accounting.set_budget(self.identity, tenant, await self.body(BudgetBody)))

    async def delete(self, tenant):
        await self.services.accounting.set_budget(self.identity, tenant, None)
        self.set_status(204)
        self.finish()


class RemindersHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.accounting.reminders(self.identity))


def accounting_routes(api: str, kw: dict) -> list:
    return [
        (api + "accounting/report", ReportHandler, kw),
        (api + "accounting/prices", PricesHandler, kw),
        (api + r"accounting/prices/([^/]+)", PriceHandler, kw),
        (api + "accounting/budgets", BudgetsHandler, kw),
        (api + r"accounting/budgets/([^/]+)", BudgetHandler, kw),
        (api + "accounting/reminders", RemindersHandler, kw),
    ]


def openapi_paths() -> dict:
    """The accounting endpoints for openapi.json (aistack_hub.api.openapi)."""
    from .openapi_more import model_body, model_query

    tag = ["accounting"]
    err = {str(c): {"description": "an error {error, message}"} for c in (400, 401, 403, 404, 409)}
    # the request models' own schemas: the fuzz test sends the bodies and arguments the handlers read
    q = model_query(ReportQuery)
    page = model_query(PageQuery)
    price, budget = ({"required": True, "content": {"application/json": {"schema": model_body(m)}}}
                     for m in (PriceBody, BudgetBody))
    ok = {"200": {"description": "ok"}}
    return {
        "/accounting/report": {"get": {"tags": tag, "summary": "Usage and cost for a period, grouped (JSON page or "
                                       "CSV with Accept: text/csv / format=csv)", "parameters": q,
                                       "responses": {**ok, **err}}},
        "/accounting/prices": {"get": {"tags": tag, "summary": "The price book's versions (pages)", "parameters": page,
                                       "responses": {**ok, **err}},
                               "post": {"tags": tag, "summary": "Add a price version (platform admins)",
                                        "requestBody": price, "responses": {"201": {"description": "created"}, **err}}},
        "/accounting/prices/{id}": {"put": {"tags": tag, "summary": "Change a future price version",
                                            "requestBody": price, "responses": {**ok, **err}},
                                    "delete": {"tags": tag, "summary": "Remove a future price version",
                                               "responses": {"204": {"description": "removed"}, **err}}},
        "/accounting/budgets": {"get": {"tags": tag, "summary": "Budgets with month-to-date spend (pages)",
                                        "parameters": page, "responses": {**ok, **err}}},
        "/accounting/budgets/{tenant}": {"put": {"tags": tag, "summary": "Set a tenant's monthly budget (platform admins)",
                                                 "requestBody": budget, "responses": {**ok, **err}},
                                         "delete": {"tags": tag, "summary": "Remove a tenant's budget",
                                                    "responses": {"204": {"description": "removed"}, **err}}},
        "/accounting/reminders": {"get": {"tags": tag, "summary": "The caller's over-budget / over-quota reminders",
                                          "responses": {**ok, **err}}},
    }
