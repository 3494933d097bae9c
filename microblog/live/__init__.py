"""The live channel: one private, resumable Server-Sent-Events stream per signed-in user.

It carries whatever the rest of the app publishes to a user (task events today); it knows
nothing of what the events mean.
"""
