"""What a command handler is given: the worker's shared context, the comment, the parsed command,
the commenter's role, the repository's effective policy and the command's own run (its page
shows the answer and what the command logged)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands import Command
from bot.events import CommentEvent, Repository
from bot.forges.base import Forge, MergeRequestInfo, Role
from bot.worker.context import JobContext
from bot.worker.governance import Governed
from policies import MergeRequestFacts


@dataclass(frozen=True)
class CommandContext:
    jobs: JobContext
    event: CommentEvent
    command: Command
    role: Role
    governed: Governed
    event_id: int
    run_id: int

    @property
    def repository(self) -> Repository:
        return self.event.repository

    @property
    def number(self) -> int:
        return self.event.number

    @property
    def forge(self) -> Forge:
        return self.jobs.forge(self.repository)

    def merge_request(self) -> MergeRequestInfo:
        return self.forge.merge_request(self.repository.full_name, self.number)

    def facts(self, info: MergeRequestInfo) -> MergeRequestFacts:
        """What the trust and promotion rules look at, for the merge request as it is now."""
        return self.jobs.governance.facts(self.repository, self.number, info,
                                          self.forge.role(self.repository.full_name, info.author),
                                          self.forge)

    def log(self, line: str) -> None:
        self.jobs.runs.append_log(self.run_id, line)
