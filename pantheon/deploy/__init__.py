"""``pantheon-deploy``: build, push, set up, run and collect on Jetson boards over SSH."""
