"""Client programs the e2e tests run in their own processes (see each module)."""
