"""Platform code: facts of the machine the runtime runs on, and its telemetry.

* :mod:`pantheon.platform.jetson` - a Jetson board's facts (L4T release, model, nvpmodel
  modes, clocks, base images), one function each, overridable by environment variable.
* :mod:`pantheon.platform.telemetry` - GPU load, power, CPU, memory and temperatures, one
  backend per module (``sysfs``, ``jtop``, ``nvml``, ``psutil``) behind one sampler.

Board-side: core dependencies only, Python 3.8. Imports only :mod:`pantheon.errors` and
:mod:`pantheon.console`; ``online/``, ``bench/`` and ``deploy/`` build on it.
"""
