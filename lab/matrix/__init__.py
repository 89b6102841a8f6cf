"""The decision matrix: scenarios, prediction, verdicts, the typed run plan, the runner, its
per-network worker and that network's FTP server."""
