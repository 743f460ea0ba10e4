"""What a submission decides before anything is sent.

The budget guard: is the worst-case batch cost within the budget
(``--max-cost``), and if not, why not. And what to do with content the
ledger has seen: refuse a duplicate, resume an interrupted submission,
note one pending against another base URL, or stop because another live
process is submitting it.

Pure: data in, data out. ``read_history`` is the one edge (it reads the
ledger and asks whether a process is alive); the CLI renders the answers
and maps a refusal to its exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from batchplan.catalog.money import money

if TYPE_CHECKING:
    from batchplan.jobs.ledger import Entry, Ledger
    from batchplan.planning.planner import BatchPlan


# -- the budget guard ---------------------------------------------------------------

def batch_cost_text(result: BatchPlan) -> str:
    """The total batch cost with its currency, for display; 'unknown' when a model has no price."""
    cost = result.plan.total().batch_cost
    return f"{money(cost)} {result.currency}" if cost is not None else "unknown"


def unpriced_models(result: BatchPlan) -> list[str]:
    """The models whose batch cost is unknown, sorted."""
    return sorted({model for (model, _, _), row in result.plan.rows.items() if row.batch_cost is None})


WITHIN, OVER, UNKNOWN = "within", "over", "unknown"


@dataclass(frozen=True)
class BudgetVerdict:
    """The worst-case batch cost against a budget, as data; ``describe``
    words it with the name the caller gives the budget (the CLI: its flag)."""

    ok: bool
    kind: str | None = None  # within | over | unknown; None without a budget
    budget: Decimal | None = None
    cost_text: str = ""
    region: str = ""
    unpriced: tuple[str, ...] = ()

    def describe(self, budget_name: str = "the budget") -> str | None:
        """One line: why it was refused, or that it is within; None without a budget."""
        if self.kind is None:
            return None
        limit = f"{budget_name} {self.budget}"
        if self.kind == UNKNOWN:
            return (f"the batch cost is unknown (no {self.region} price for {', '.join(self.unpriced)}), so {limit} "
                    "cannot be checked; not submitted")
        if self.kind == OVER:
            return (f"the worst-case batch cost {self.cost_text} is over {limit}; not submitted "
                    "(batchplan compare --output-tokens N shows an expected cost)")
        return f"within budget: worst-case batch cost {self.cost_text} <= {limit}"

    @property
    def message(self) -> str | None:
        return self.describe()


def check_budget(result: BatchPlan, budget: Decimal | None) -> BudgetVerdict:
    """The worst-case batch cost of ``result`` against ``budget`` (None: no budget).

    An unknown cost under a budget is refused: it cannot be shown to fit.
    """
    if budget is None:
        return BudgetVerdict(True)
    cost = result.plan.total().batch_cost
    if cost is None:
        return BudgetVerdict(False, UNKNOWN, budget, region=result.region, unpriced=tuple(unpriced_models(result)))
    kind = OVER if cost > budget else WITHIN
    return BudgetVerdict(kind == WITHIN, kind, budget, batch_cost_text(result), result.region)


# -- content submitted before --------------------------------------------------------

@dataclass(frozen=True)
class History:
    """What the ledger knows of one content (sha256) and base URL."""

    earlier: Entry | None  # the latest batch created from this content, any base URL
    pending: tuple[Entry, ...] = ()  # interrupted submissions to this base URL, oldest first
    elsewhere: tuple[Entry, ...] = ()  # interrupted submissions to other base URLs
    busy: bool = False  # a live process on this machine is still working on pending[0]


DUPLICATE = "duplicate"  # the content was submitted before: a refusal
BUSY = "busy"  # another process is submitting it right now: try again later


@dataclass(frozen=True)
class Refusal:
    kind: str  # DUPLICATE or BUSY
    message: str  # one line


@dataclass(frozen=True)
class Decision:
    resume: Entry | None  # the interrupted submission to finish instead of starting one
    duplicate: str | None  # submitted before, without force: why no new batch may be created
    notes: tuple[str, ...]  # interrupted submissions of this content to other base URLs
    refusal: Refusal | None  # stop now, with this

    @property
    def create(self) -> bool:
        """Whether a new batch may be created. A duplicate may still finish
        an interrupted run, which can own a batch already, but creates none."""
        return self.duplicate is None


def decide(history: History, path: str, force: bool) -> Decision:
    """Resume, refuse or go ahead with a submission of the file at ``path``."""
    duplicate = None
    if history.earlier is not None and not force:
        earlier = history.earlier
        duplicate = (f"{path}: this content was already submitted as {earlier.batch_id} at {earlier.when} "
                     f"({earlier.region}, {earlier.base_url}); pass --force to submit it again")
        if not history.pending:
            # Nothing interrupted to look up: refused before any note.
            return Decision(None, duplicate, (), Refusal(DUPLICATE, duplicate))
    notes = tuple(f"an interrupted submission of this content to {other.base_url} ({other.when}) is pending; "
                  f"submit with --base-url {other.base_url} to recover it" for other in history.elsewhere)
    resume = history.pending[0] if history.pending else None
    refusal = None
    if resume is not None and history.busy:
        refusal = Refusal(BUSY, f"{path}: process {resume.pid} is submitting this content right now; "
                                "let it finish, then check with batchplan status")
    return Decision(resume, duplicate, notes, refusal)


def read_history(ledger: Ledger, digest: str, base_url: str) -> History:
    """The edge: what ``ledger`` holds for this content, and whether a live
    process owns its oldest interrupted submission to ``base_url``."""
    earlier = ledger.created_for(digest)
    pending = tuple(ledger.pending_for(digest, base_url))
    return History(
        earlier=earlier,
        pending=pending,
        elsewhere=tuple(e for e in ledger.pending_for(digest) if e.base_url != base_url),
        busy=bool(pending) and pending[0].in_flight_elsewhere(),
    )
