"""Sweeps: train many variants of one config, on local processes or a Dask cluster.

* ``spec``       ``--grid``/``--random`` options or a ``sweep:`` section -> dimensions -> assignments
* ``plan``       every trial's resolved, validated config, before any trial starts
* ``worker``     one trial, trained in memory on a worker
* ``executors``  a pool of local processes, or a Dask cluster
* ``runner``     submit, collect, retry lost trials, record failures
* ``store``      trial folders, ``summary.csv``, ``best.yaml``

The command itself (options, the live table, the ranking) is ``nnctl.cli.sweep``.
"""
