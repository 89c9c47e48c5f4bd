"""The pure core: frozen model, tags, planners, errors, settings, clock. No I/O, no SDKs."""
