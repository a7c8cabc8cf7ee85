"""Command-line tools (test-data generators and the like)."""
