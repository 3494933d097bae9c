"""Getting back into an account: a password reset link by email, sent by a worker."""
