"""Use cases: observe, plan, apply, return data. One module per command; shared steps in shared/."""
