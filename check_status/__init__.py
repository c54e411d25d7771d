"""check-status: cron-run health checks and SMS alerts for EOS/Antelope nodeos servers."""

__version__ = "0.1.0"
