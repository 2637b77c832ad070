"""The scale-out job queue: procrastinate on PostgreSQL behind the job backend port (issue 9).

- :mod:`alliance.queue.selection`: which queue runs (``ALLIANCE_QUEUE``);
- :mod:`alliance.queue.backend`: deferring into procrastinate on the caller's connection;
- :mod:`alliance.queue.tasks`: the procrastinate App (registry jobs as tasks, upkeep);
- :mod:`alliance.queue.periodic`: periodic jobs, once per tick across workers;
- :mod:`alliance.queue.relay`: outbox relay, listener and sweep;
- :mod:`alliance.queue.reaper`: stalled jobs;
- :mod:`alliance.queue.worker`: the worker process / thread;
- :mod:`alliance.queue.stats`: what ``alliance jobs status`` shows.

Importing this package imports nothing heavy; import the submodules you need.
"""
