"""Reports and plots from runtime/simulator logs."""
