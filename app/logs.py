"""Start-up shared by the commands (API, broker, worker): settings, then logging."""

import logging
import sys

from app.config import Config, ConfigError, check_folders, check_listen, check_secret_key, load_config


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )


def start_command(listen: bool = False) -> Config:
    """Load the settings and set up logging; a bad setting ends the command with a clear message, exit 2.

    Checked too: the folders are writable, and with `listen` (the API) its ports are free to listen on.
    """
    try:
        config = load_config()
        check_folders(config)
        if listen:
            check_listen(config)
            check_secret_key(config)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    configure(config.LOG_LEVEL)
    return config
