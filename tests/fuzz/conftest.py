"""The fuzz suite's summary: public functions covered and examples run (see hostile.py)."""

from tests.fuzz.hostile import COVERED, EXAMPLES


def pytest_terminal_summary(terminalreporter):
    if COVERED:
        terminalreporter.write_line(f"fuzz: {len(COVERED)} public functions covered, {EXAMPLES[0]} hostile "
                                    f"examples run")
