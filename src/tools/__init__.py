"""The tools over the course's files: batched evaluation (run.py's evaluate), the synthetic
world and its demo, and the report. They import the course's files and their library
(submission.lib); nothing there imports them."""
