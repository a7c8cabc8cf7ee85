"""The movies job, in the order a file goes through it: kind.py (its header rules, its runner), schema.py
(the CSV contract), prepare.py (read, clean and encode each block, in a helper process: app/jobs/helper/),
encode.py (BSON), ingest.py (the upserts and the checkpoint).

Kept light on purpose, as app/jobs/__init__.py is: the helper process imports app.jobs.movies.prepare, and
needs neither the registry, the other kinds nor the MongoDB driver.
"""
