"""The bench's own calls to the twins (they may run in another process): admin (bulk entries,
faults, lost responses, stats), PSA approvals, ERP SuiteQL read-back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from bench._harness.processes import SYSTEMS

if TYPE_CHECKING:
    from stack import Stack

STATIC_TOKEN = "dev-static-token"
"""Every twin accepts it (the connectors use OAuth2; the bench's own calls do not need to)."""
BULK_CHUNK = 1000


class Twins:
    """The bench's own calls to the twins (they may run in another process): admin (bulk
    entries, faults, stats), PSA approvals, ERP SuiteQL read-back."""

    def __init__(self, stack: Stack, max_connections: int = 32) -> None:
        self.base = stack.urls["sandbox"]
        self.http = httpx.AsyncClient(
            timeout=120,
            headers={"Authorization": f"Bearer {STATIC_TOKEN}"},
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def bulk(
        self, entries: list[dict[str, Any]], *, approved: bool, emit: bool = False
    ) -> list[str]:
        ids: list[str] = []
        for i in range(0, len(entries), BULK_CHUNK):
            r = await self.http.post(
                f"{self.base}/psa/_admin/time_entries/bulk",
                json={"entries": entries[i : i + BULK_CHUNK], "approved": approved, "emit": emit},
            )
            r.raise_for_status()
            ids += r.json()["ids"]
        return ids

    async def approve(self, entry_id: str) -> None:
        r = await self.http.put(
            f"{self.base}/psa/api/v1/time_entries/{entry_id}.json",
            json={"time_entry": {"approved": True}},
        )
        r.raise_for_status()

    async def worker_users(self) -> dict[str, str]:
        """HCM worker id -> PSA user id, from the PSA's external references."""
        out: dict[str, str] = {}
        page = 1
        while True:
            r = await self.http.get(
                f"{self.base}/psa/api/v1/external_references.json",
                params={
                    "service_name": "pssync",
                    "subject_type": "User",
                    "service_model": "hcm_worker",
                    "page": page,
                    "per_page": 200,
                },
            )
            r.raise_for_status()
            body = r.json()
            for ref in body.get("results", []):
                obj = body[ref["key"]][ref["id"]]
                out[str(obj["service_model_ref"])] = str(obj["subject_id"])
            if page >= int(body.get("meta", {}).get("page_count") or 0):
                return out
            page += 1

    async def faults(self, system: str, config: dict[str, Any]) -> None:
        r = await self.http.post(f"{self.base}/{system}/_admin/faults", json=config)
        r.raise_for_status()

    async def lost_responses(self, system: str, config: dict[str, Any]) -> None:
        """Answers the twin loses (processed, then 504): {"rate", "seed"}; {} turns it off."""
        r = await self.http.post(f"{self.base}/{system}/_admin/lost-responses", json=config)
        r.raise_for_status()

    async def lost_count(self, system: str) -> int:
        """How many answers the twin has lost so far."""
        r = await self.http.get(f"{self.base}/{system}/_admin/lost-responses")
        r.raise_for_status()
        return int(r.json()["dropped"])

    async def stats(self, system: str) -> dict[str, Any]:
        r = await self.http.get(f"{self.base}/{system}/_admin/stats")
        r.raise_for_status()
        return dict(r.json())

    async def reset_stats(self) -> None:
        for system in SYSTEMS:
            r = await self.http.post(f"{self.base}/{system}/_admin/stats/reset")
            r.raise_for_status()

    async def pick_stats(self, *keys: str) -> dict[str, dict[str, Any]]:
        """Every twin's stats, only `keys` (in that order), by system."""
        out = {}
        for system in SYSTEMS:
            s = await self.stats(system)
            out[system] = {k: s[k] for k in keys}
        return out

    async def all_stats(self) -> dict[str, Any]:
        return await self.pick_stats(
            "requests", "served", "throttled_429", "errors_5xx", "in_flight_max"
        )

    async def webhook_deliveries(self, system: str = "psa") -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.base}/{system}/_admin/webhooks/deliveries")
        r.raise_for_status()
        return list(r.json())

    async def timebills(self) -> list[dict[str, Any]]:
        """Every timebill in the ERP twin (SuiteQL, 1,000 a page)."""
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            r = await self.http.post(
                f"{self.base}/erp/services/rest/query/v1/suiteql",
                params={"limit": 1000, "offset": offset},
                headers={"Prefer": "transient"},
                json={
                    "q": "SELECT id, externalid, custcol_pssync_source_entry, reverses "
                    "FROM timebill"
                },
            )
            r.raise_for_status()
            page = r.json()
            items = page.get("items", [])
            rows += items
            if not page.get("hasMore"):
                return rows
            offset += len(items) or 1000
