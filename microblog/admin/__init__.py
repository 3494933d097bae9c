"""The operators' pages, for accounts with the admin role."""
