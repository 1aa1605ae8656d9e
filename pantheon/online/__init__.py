"""Online parts, run on the board: scheduler, runtime, memory, workload, telemetry, profiler server."""
