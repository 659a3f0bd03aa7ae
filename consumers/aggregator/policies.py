"""Which policy decides each task's items, built from settings and the tasks file when the tier
starts (after the rules table is restored), never inside an item's decision.

The choice is `choose_policy`'s: `aggregator.policy` if set explicitly (env, file or flag), else
the task's own `policy` in the tasks file, else the default, `target`, which is built from the
shared rule (`tables.rules`); the others by `policy.voting.make_policy`.
The confident majority's thresholds are keyed by worker name and must resolve: a name that is not one of
`aggregator.workers` is a configuration error, and so is a worker left without a threshold when
no default threshold was set explicitly (`aggregator.default_threshold` or the task's
`threshold`). Nothing silently falls back to 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tribunal.consumers.policy.ballots import Policy
from tribunal.consumers.policy.target import TargetPolicy
from tribunal.consumers.policy.voting import PolicyChoice, make_policy
from tribunal.consumers.tables.reliability import ReliabilityTotals
from tribunal.consumers.tables.rules import RuleTable
from tribunal.core.errors import ConfigError
from tribunal.core.logs import get_logger
from tribunal.core.settings import AggregatorSettings
from tribunal.schemas.tasks import Task, TaskRegistry

__all__ = ["TaskPolicies", "choose_policy", "confident_majority_thresholds", "policy_name"]

log = get_logger("tribunal.aggregator")


def choose_policy(config: AggregatorSettings, definition: Task | None) -> PolicyChoice:
    """The configured policy for a task's items: `aggregator.policy` if set explicitly (env, file
    or flag), else the task's own from tasks.toml, else the default; the task's thresholds
    override the configured ones."""
    explicit = "policy" in config.model_fields_set
    # Both already hold the policy's own name: settings and tasks files resolve aliases on load.
    name = config.policy if explicit or not definition or not definition.policy else definition.policy
    task_threshold = definition.threshold if definition else None
    thresholds: dict[str, float] = {}
    threshold: float | None = None
    if name == "confident_majority":
        thresholds = {**config.thresholds, **(definition.thresholds if definition else {})}
        threshold = task_threshold if task_threshold is not None else config.default_threshold
    elif name == "weighted":
        threshold = task_threshold if task_threshold is not None else config.accept_threshold
    return PolicyChoice(name, config.quorum, thresholds=thresholds, threshold=threshold)


def policy_name(config: AggregatorSettings, definition: Task | None) -> str:
    """The name of the policy for a task's items (module docstring)."""
    return choose_policy(config, definition).name


def confident_majority_thresholds(
    config: AggregatorSettings, definition: Task | None
) -> tuple[dict[str, float], float]:
    """(per-worker thresholds, default) for the confident majority; ConfigError unless every name resolves."""
    per_worker = {**config.thresholds, **(definition.thresholds if definition else {})}
    task_default = definition.threshold if definition else None
    default = task_default if task_default is not None else config.default_threshold
    workers = set(config.workers)
    where = f"task {definition.name!r}" if definition else "aggregator.thresholds"
    unknown = sorted(set(per_worker) - workers)
    if unknown:
        raise ConfigError(
            f"confident-majority thresholds of {where} name {unknown}, not among the workers {sorted(workers)} "
            "(aggregator.workers): key thresholds by the worker names the aggregator expects"
        )
    explicit_default = task_default is not None or "default_threshold" in config.model_fields_set
    missing = sorted(workers - set(per_worker))
    if per_worker and missing and not explicit_default:
        raise ConfigError(
            f"confident-majority thresholds of {where} give no threshold for workers {missing}; add them, or set a "
            "default (the task's `threshold` or aggregator.default_threshold)"
        )
    return per_worker, default


class TaskPolicies:
    """The policy of each task, built once and rebuilt when the target policy's rule moves on."""

    def __init__(
        self, config: AggregatorSettings, tasks: TaskRegistry, rules: RuleTable, totals: ReliabilityTotals | None
    ) -> None:
        self._config = config
        self._tasks = tasks
        self._rules = rules
        self._totals = totals
        self._policies: dict[str, Policy] = {}
        self._other_models: dict[tuple[str, int], TargetPolicy] = {}

    def validate(self) -> None:
        """Read the target policy's calibrations (an unreadable one is logged, and its task
        starts cold) and build every other task's policy now, so a bad configuration stops the
        process at start."""
        self._rules.check_calibrations()
        for task in self._tasks:
            if policy_name(self._config, task) != "target":
                self.policy(task.name)

    def build_all(self) -> None:
        """Build every task's policy, target rules included, so the first item of a task is
        decided like every later one. Call once the rules table is restored: a target rule built
        before would miss a newer rule on the topic."""
        for task in self._tasks:
            self.policy(task.name)

    def policy(self, task: str, models: Mapping[str, str] | None = None) -> Policy:
        """The policy for an item of `task` whose votes come from `models` (worker -> model id):
        a target rule pinned to other models decides as if nothing were certified yet."""
        policy = self._policies.get(task)
        if isinstance(policy, TargetPolicy) and policy.rule is not self._rules.rule(task):
            policy = None
        if policy is None:
            policy = self._policies[task] = self._build(task)
        if isinstance(policy, TargetPolicy) and models and not policy.rule.applies_to(models):
            return self._inapplicable(policy, models)
        return policy

    def _inapplicable(self, policy: TargetPolicy, models: Mapping[str, str]) -> TargetPolicy:
        key = (policy.rule.task, policy.rule.version)
        cached = self._other_models.get(key)
        if cached is None:
            log.warning("rule_fitted_for_other_models", task=key[0], version=key[1],
                        rule_models=dict(policy.rule.models), vote_models=dict(models))  # fmt: skip
            cached = self._other_models[key] = replace(policy, rule=policy.rule.inapplicable())
        return cached

    def audit_rate(self, policy: Policy) -> float | None:
        """The target policy's audit-sample rate (the rule's, never below the configured
        shadow-audit rate), recorded on its verdicts and requests; None for other policies."""
        if isinstance(policy, TargetPolicy):
            return max(policy.audit_rate, self._config.audit_rate)
        return None

    def _build(self, task: str) -> Policy:
        config = self._config
        definition = self._tasks.get(task) if task in self._tasks else None
        choice = replace(choose_policy(config, definition), workers=tuple(config.workers))
        if choice.name == "target":
            return TargetPolicy(self._rules.rule(task), config.workers)
        if choice.name == "confident_majority":
            confident_majority_thresholds(config, definition)  # every name must resolve
        reliability = self._totals.reliability(task) if self._totals and choice.name == "weighted" else None
        labels = definition.labels if definition else ()
        try:
            return make_policy(choice, labels, reliability)
        except ValueError as exc:
            raise ConfigError(f"policy {choice.name!r} for task {task!r}: {exc}") from None
