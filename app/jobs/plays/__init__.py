"""The plays job: kind.py (its header rules, its runner), rules.py (the columns, what a good row is, the
result's shape), aggregate.py (the totals per song and day, and the result file)."""
