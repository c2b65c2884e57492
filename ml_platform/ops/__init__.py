"""What the commands do, on the profile's stores: headless runs (demo, ingest), lineage, registry
actions. The CLI parses and prints; everything else is here, callable from tests and scripts."""
