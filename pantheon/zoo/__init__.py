"""The task zoo: the paper's nine tasks and the bundled ``digits`` demo tasks."""
