"""Names of what regsearch stores on studies and trials besides the params (space.py)."""

SETTINGS_ATTR = "settings"  # study user attr: the task's settings, checked on resume
BASELINE_ATTR = "baseline"  # trial user attr naming the baseline a trial measures
