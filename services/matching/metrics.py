"""matching's own Prometheus metrics, beside FastStream's."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class MatchingMetrics:
    proposals: Counter
    confirmed: Counter
    ended: Counter
    time_to_match: Histogram
    stale_pools: Counter
    repeated_sessions: Counter
    stalled: Counter
    weights_learned: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> MatchingMetrics:
        return cls(
            proposals=Counter("mentornet_proposals", "Proposals made", ["mode"], registry=registry),
            confirmed=Counter(
                "mentornet_matches_confirmed", "Matches both sides accepted", registry=registry
            ),
            ended=Counter(
                "mentornet_matches_ended",
                "Proposals or matches ended",
                ["outcome"],
                registry=registry,
            ),
            time_to_match=Histogram(
                "mentornet_time_to_match_seconds",
                "From joining the waitlist to a proposal",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600, 86400, 7 * 86400),
                registry=registry,
            ),
            stale_pools=Counter(
                "mentornet_stale_pools",
                "Proposals the database refused: this replica's pool was out of date (retried)",
                registry=registry,
            ),
            repeated_sessions=Counter(
                "mentornet_sessions_repeated",
                "Sessions reported again under another event id, counted once",
                registry=registry,
            ),
            stalled=Counter(
                "mentornet_relationships_stalled",
                "Relationships reported stalled (no session for stall_after_days)",
                registry=registry,
            ),
            weights_learned=Counter(
                "mentornet_weights_learned",
                "Programs' weights learned from their outcomes; in_force: enough outcomes",
                ["in_force"],
                registry=registry,
            ),
        )
