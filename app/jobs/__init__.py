"""The job kinds: registry.py (each kind by name, and which kind a header is), kind.py (what a kind is),
and a package per kind (movies/, plays/) holding its kind.py and the modules that do its work.

Kept light on purpose: a kind's helper process imports its modules through this package.
"""
