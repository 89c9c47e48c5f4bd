"""Use case `burn`: contain first, keep evidence, destroy, relaunch with fresh keys.

`command` finds or opens the incident and runs the steps through `run.BurnRun`; each phase's
steps live in their own module (`contain`, `preserve`, `destroy`, `recover`), and `dry_run`
lists the calls they would make. Every step is journaled and safe to run again, so
`burn --resume` (or a plain `burn`, which finds the open incident) carries on after a crash.
"""

from bastion.usecases.burn.command import BurnResult, burn, incidents_dir

__all__ = ["BurnResult", "burn", "incidents_dir"]
