"""The picture brought up: namespaces and links (LabNet), run isolation (sandbox), feature probes,
reachability checks, the iperf3 baseline, and waiting until what the lab started is ready."""
