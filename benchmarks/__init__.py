"""raylab's own benchmark suite: the same workloads on raylab and on real Ray.

Run it from the repository root::

    python -m benchmarks --quick                  # every case, small sizes
    python -m benchmarks --cases task_rtt,tiny_tasks --impl raylab

Why it is built this way:

* Every case runs in a *fresh subprocess per implementation* (``benchmarks.child``),
  so ``init``/``shutdown`` cost and memory are measured on a clean interpreter and one
  case cannot slow down the next. Inside a case the timed body is repeated and the
  median is kept.
* Real Ray may live in another interpreter (``--ray-python``), so the case code is
  plain Python that imports nothing from raylab except in raylab-only cases, and
  this package imports only the standard library, numpy and psutil.
* Absolute figures drift with the machine and whatever else runs on it; the ratio
  raylab/Ray measured in the same sitting is what the project's targets are about.
"""
