"""Generic background jobs: the Task table, launching, progress, events and the reaper.

A job type is a function ``body(task, progress)`` declared with :func:`job`; see
``microblog/exports/jobs.py`` for the first one.
"""
