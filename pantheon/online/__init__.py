"""Online parts, run on the board: scheduler, runtime, memory, workload, repository, profiler server, chunk timing."""
