"""Private messages between users, and the unread count that follows the reader live."""
