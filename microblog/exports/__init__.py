"""Export my posts: the first job type."""
