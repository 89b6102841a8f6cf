"""The FTP endpoints of a cell (the built-in ones and third-party peers) and the throughput benches."""
