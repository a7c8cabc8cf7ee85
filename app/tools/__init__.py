"""Command-line tools of the service: API keys and the settings page."""
