"""NetSuite budgets (versioned, `If-Match`) and labor forecasts of a financial project."""

from __future__ import annotations

from connectors.erp.mapping import budget_from_netsuite, forecast_body, forecast_from_netsuite
from connectors.erp.netsuite._base import _NetSuiteBase
from connectors.erp.port import SYSTEM
from contracts.errors import NotFoundError, StaleVersionError
from contracts.money import Money
from contracts.v1.change_orders import ErpBudget
from contracts.v1.models import Forecast


class _BudgetsMixin(_NetSuiteBase):
    # -- budget and forecast ---------------------------------------------------------------

    async def get_budget(self, project: str) -> ErpBudget:
        body = await self._get(f"{self._path('job', project)}/budget")
        currencies = await self._currencies(body.get("currency"))
        return budget_from_netsuite(body, project, currencies=currencies)

    async def revise_budget(
        self, project: str, *, amount: Money, expected_version: int
    ) -> ErpBudget:
        url = f"{self._path('job', project)}/budget"
        response = await self._send(
            "PATCH",
            url,
            {"amount": amount.amount, "currency": {"id": amount.currency}},
            ok=(200, 204, 412),
            headers={"If-Match": f'"{expected_version}"'},
        )
        current = await self.get_budget(project)
        if response.status_code == 412:
            # A retried PATCH whose first attempt went through looks stale: it is not.
            if current.version == expected_version + 1 and current.amount == amount:
                return current
            raise StaleVersionError(
                f"{SYSTEM} budget of {project} is at version {current.version}, "
                f"not {expected_version}",
                system=SYSTEM,
            )
        return current

    async def get_forecast(self, project: str, period: str) -> Forecast | None:
        try:
            body = await self._get(f"{self._path('job', project)}/laborForecast/{period}")
        except NotFoundError:
            return None
        currencies = await self._currencies(body.get("currency"))
        return forecast_from_netsuite(body, project, currencies=currencies)

    async def put_forecast(self, forecast: Forecast, *, project: str | None = None) -> Forecast:
        project = project or forecast.project_id
        url = f"{self._path('job', project)}/laborForecast/{forecast.period}"
        response = await self._send("PUT", url, forecast_body(forecast), ok=(200, 204, 412))
        if response.status_code == 412:
            raise StaleVersionError(
                f"{SYSTEM} forecast {project}/{forecast.period} is newer than version "
                f"{forecast.version}",
                system=SYSTEM,
            )
        written = await self.get_forecast(project, forecast.period)
        assert written is not None
        return written
