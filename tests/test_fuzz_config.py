"""Config fuzz: hostile YAML files and overrides give a config or one error line with exit 2,
never a traceback or a hang (scripts/fuzz_config.py runs thousands of the same cases)."""

from hypothesis import HealthCheck, given, settings

from config_fuzz import cases, check_case


@settings(max_examples=300, deadline=5000, suppress_health_check=list(HealthCheck), database=None)
@given(cases)
def test_fuzzed_configs_give_a_config_or_one_error_line(case):
    text, overrides = case
    problem = check_case(text, overrides, use_cli=True)
    assert problem is None, (problem, text[:500], overrides)
