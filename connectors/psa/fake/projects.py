"""The in-memory PSA's projects, rate cards, billing milestones and activity feed."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.psa._constants import SYSTEM
from connectors.psa.fake._base import FakePost, FakeProject, FakePsaBase, _found, _refused
from connectors.psa.mapping import wbs_in_creation_order
from contracts.errors import BusinessRuleViolation, StaleVersionError
from contracts.ids import is_ulid
from contracts.money import Money
from contracts.ownership import check_write
from contracts.systems import System
from contracts.v1 import Milestone, MilestoneStatus, Project, ProjectStatus, RateCard


class FakeProjectsMixin(FakePsaBase):
    """`FakePsa`'s projects, rate cards, billing milestones and activity feed."""

    # ---------------------------------------------------------------- projects

    async def find_project_by_enterprise_id(self, enterprise_id: str) -> str | None:
        self._enter("find_project_by_enterprise_id")
        for psa_id, fp in self.projects.items():
            if fp.enterprise_id == enterprise_id:
                return psa_id
        return None

    async def create_project_shell(self, project: Project, *, enterprise_id: str) -> str:
        self._enter("create_project_shell")
        wbs_in_creation_order(project)
        if project.rate_card_id and project.rate_card_id not in self.rate_cards:
            raise BusinessRuleViolation(
                "UNKNOWN_RATE_CARD",
                f"rate card {project.rate_card_id} does not exist in the PSA",
                field="rate_card_id",
                system=SYSTEM,
            )
        for psa_id, fp in self.projects.items():
            if fp.enterprise_id == enterprise_id:
                fp.archived = False
                fp.reference_status = "successful"
                return psa_id
        psa_id = self._id()
        stored = project.model_copy(
            update={
                "enterprise_id": enterprise_id if is_ulid(enterprise_id) else None,
                "source_system": System.PSA,
                "source_version": "1",
                "status": ProjectStatus.ACTIVE,
                "milestones": [
                    ms.model_copy(update={"external_id": self._id()}) for ms in project.milestones
                ],
            }
        )
        self.projects[psa_id] = FakeProject(stored, enterprise_id, budget=project.contract_value)
        return psa_id

    async def archive_project(self, psa_id: str, *, reason: str) -> None:
        self._enter("archive_project")
        fp = self.projects.get(psa_id)
        if fp is None:
            return
        if not fp.archived:
            fp.archived = True
            fp.version += 1
        fp.reference_status = "failed"
        fp.reason = reason

    async def get_project(self, psa_id: str) -> Project:
        self._enter("get_project")
        fp = self._project(psa_id)
        status = ProjectStatus.ARCHIVED if fp.archived else fp.project.status
        return fp.project.model_copy(update={"status": status, "source_version": str(fp.version)})

    async def set_enterprise_id(self, psa_id: str, enterprise_id: str) -> None:
        self._enter("set_enterprise_id")
        check_write(System.PSSYNC, "Project", ["enterprise_id"])
        fp = self._project(psa_id)
        fp.enterprise_id = enterprise_id
        if is_ulid(enterprise_id):
            fp.project = fp.project.model_copy(update={"enterprise_id": enterprise_id})

    async def get_project_budget(self, psa_id: str) -> Money | None:
        self._enter("get_project_budget")
        return self._project(psa_id).budget

    async def update_project_budget(
        self, psa_id: str, budget: Money, *, expected_version: str | None = None
    ) -> str:
        self._enter("update_project_budget")
        check_write(System.ERP, "Project", ["budget"])
        fp = self._project(psa_id)
        if fp.archived:
            raise _refused(f"project {psa_id} is archived", "archived")
        if budget.currency != fp.project.currency:
            raise BusinessRuleViolation(
                "CURRENCY_MISMATCH",
                f"project is in {fp.project.currency}, budget in {budget.currency}",
                field="budget",
                system=SYSTEM,
            )
        if expected_version is not None and expected_version != str(fp.version):
            raise StaleVersionError(
                f"workspace {psa_id} is at version {fp.version}, not {expected_version}",
                system=SYSTEM,
            )
        if fp.budget != budget:
            fp.budget = budget
            fp.version += 1
        return str(fp.version)

    # ---------------------------------------------------------------- rate cards

    async def get_rate_card(self, rate_card_id: str) -> RateCard:
        self._enter("get_rate_card")
        return _found(self.rate_cards, rate_card_id, "rate card")

    # ---------------------------------------------------------------- billing milestones

    async def list_milestones(self, psa_id: str) -> list[Milestone]:
        self._enter("list_milestones")
        return list(self._project(psa_id).project.milestones)

    async def complete_milestone(self, psa_id: str, code: str) -> Milestone:
        self._enter("complete_milestone")
        ms = self._milestone(psa_id, code)
        if ms.status is not MilestoneStatus.PLANNED:
            return ms
        return self._set_milestone(psa_id, code, MilestoneStatus.COMPLETED)

    # ---------------------------------------------------------------- activity feed

    async def post_notification(
        self, workspace_id: str, message: str, recipients: Sequence[str], *, key: str | None = None
    ) -> str:
        self._enter("post_notification")
        if workspace_id not in self.projects:
            raise _refused(f"project {workspace_id} does not exist", "workspace_id")
        if not message.strip():
            raise _refused("Please enter a message", "message")
        if key is not None:
            for post in self.posts:
                if post.workspace_id == workspace_id and post.key == key:
                    return post.id
        post = FakePost(self._id(), workspace_id, message, list(dict.fromkeys(recipients)), key)
        self.posts.append(post)
        return post.id
