"""aimserver's tests. Hypothesis runs with a deterministic profile so CI is repeatable."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "aimserver",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("aimserver")
