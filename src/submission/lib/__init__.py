"""The library under the course's files: what they call and the course did not have. Options
and their checks, files written whole, checkpoints, progress and metrics logs, the fast path's
batches and recipe, torch.distributed, and what differs between torch versions. It imports
nothing of the course's files; they, and the tools in src/tools/, import it."""
