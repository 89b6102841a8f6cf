"""The picture brought up: namespaces and links (LabNet), run isolation (sandbox), feature probes, reachability checks."""
