"""Generic background jobs: the Task table, job types, launching, progress, the one event
contract and the one way to end a task; ``worker/`` is the side that runs them, ``wiring`` puts
the broker together.

A job type is a function ``body(task, attempt, progress)`` declared with
:func:`microblog.jobs.worker.runner.job`; ``microblog/stats/jobs.py`` is the smallest one.
"""
