import pytest

from tistudio.errors import TIStudioError
from tistudio.schedules import parse_lr


def rates(text, max_steps, steps):
    s = parse_lr(text, max_steps)
    return [s.lr_at(k) for k in steps]


def test_single_rate_runs_to_max_steps():
    assert rates("0.005", 100, [0, 99, 100]) == [0.005, 0.005, None]


def test_seed_example_schedule():
    s = parse_lr("0.1:500, 0.01:1000, 0.001:10000", 20000)
    assert [s.lr_at(k) for k in (0, 499, 500, 999, 1000, 9999)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    # The schedule runs out before max steps: training stops there, as in A1111.
    assert s.lr_at(10000) is None and s.last_step == 10000


def test_bare_last_rate_and_minus_one_run_to_the_end():
    assert rates("0.005:100, 1e-3:1000, 1e-5", 5000, [99, 100, 999, 1000, 4999, 5000]) == \
        [0.005, 1e-3, 1e-3, 1e-5, 1e-5, None]
    assert rates("0.01:10, 0.001:-1", 50, [10, 49]) == [0.001, 0.001]


def test_decimal_step_is_a_fraction_of_max_steps():
    assert rates("0.005:0.25, 0.001", 400, [99, 100, 399]) == [0.005, 0.001, 0.001]
    assert rates("0.1:0.5, 0.01:1.0", 10, [4, 5, 9, 10]) == [0.1, 0.01, 0.01, None]


def test_end_step_past_max_is_clamped():
    assert parse_lr("0.1:500, 0.01", 100).entries == ((0.1, 100),)


@pytest.mark.parametrize("text, fragment", [
    ("abc", "'abc' is not a number"),
    ("0.1:xyz", "'xyz' is not a step number"),
    ("0.1:100, 0.01:50", "increasing"),
    ("0.1, 0.01", "must be the last entry"),
    ("0.1:100,,0.01", "empty entry"),
    ("-0.1", "positive"),
    ("__import__('os')", "is not a number"),
])
def test_malformed_schedules_name_the_entry(text, fragment):
    with pytest.raises(TIStudioError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as err:
        parse_lr(text, 1000)
    assert "\n" not in str(err.value) and "--lr" in str(err.value)
