"""Development tools: the run command's process manager, local Redis and mail servers, and the
pytest plugin for job types. Never part of the product image."""
