"""Accounts: the User model, registration, login and logout."""
