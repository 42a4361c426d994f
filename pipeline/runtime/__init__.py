"""What every entry point shares: the command-line contract, SIGTERM handling, the Spark
session and its named steps."""
