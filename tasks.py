"""What ``dramatiq tasks`` imports: builds the app, which binds every job to its broker.

dramatiq tasks --processes 2 --threads 4      # one worker host
dramatiq tasks --queues default               # only some queues
"""

from microblog import create_app

app = create_app()
