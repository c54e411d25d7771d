from check_status.cli import entry

entry()
