"""Suite-wide settings. Network and interop fixtures live in tests/net/ and tests/interop/."""
