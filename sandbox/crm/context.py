"""What the CRM twin's route modules share: the twin state, the org's tenant name, open query
cursors, and the won-deal webhook."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox._twin import TwinState
from sandbox.crm.describe import CONTRACTED_STAGE, WON_EVENT
from sandbox.crm.soql import _Cursor


@dataclass
class CrmTwin:
    """One CRM twin app's shared state (what `create_app`'s closures used to hold)."""

    state: TwinState
    tenant: str
    """Goes into every won-deal event (the org's name in pssync)."""
    cursors: dict[str, _Cursor] = field(default_factory=dict)
    """Open query locators -> their cursors."""

    def won(self, opp_id: str) -> None:
        """Emit the signed thin `opportunity.won` event for `opp_id`."""
        assert self.state.webhooks is not None
        self.state.webhooks.emit(
            WON_EVENT,
            {
                "tenant": self.tenant,
                "object": "Opportunity",
                "id": opp_id,
                "stage": CONTRACTED_STAGE,
            },
        )
